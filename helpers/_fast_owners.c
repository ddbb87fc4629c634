/*
 * drgn_ss._fast, owners: every process's open sockets, socket_holders().
 * Reference: drgn_ss.owners (kernel_owners).
 */
#include "_fast.h"

/* drgn_ss.owners.SOCKET_FILE_DAMAGED */
#define SOCKET_FILE_DAMAGED "a socket file, its socket and its sock do not point at each other: damaged"

static int holder_cmp(const void *a, const void *b)
{
	const Holder *x = a, *y = b;
	if (x->sock != y->sock)
		return x->sock < y->sock ? -1 : 1;
	if (x->pid != y->pid) /* ss's order: the highest pid first, then the highest fd */
		return x->pid > y->pid ? -1 : 1;
	if (x->fd != y->fd)
		return x->fd > y->fd ? -1 : 1;
	return 0;
}

/*
 * An open file's socket is three dependent loads away (file, its struct socket, its sock),
 * and an fd array's files lie anywhere. Before the checked reads of a block of fds,
 * look ahead (from a mapped image only, the values used for nothing but asking for lines):
 * every file's lines, then every socket file's struct socket's, then their socks', each
 * pass's loads overlapping. The checked reads then find what they read in the cache.
 */
#define LOOKAHEAD_FDS 32

typedef struct {
	Py_ssize_t f_op, private_data, socket_file, socket_sk, sk_socket, span;
	uint64_t sock_ops;
} FileLayout;

static const unsigned char *mapped_u64(const Mem *m, uint64_t addr, uint64_t *v)
{
	const unsigned char *p = mem_ptr(m, addr, 8);
	if (p)
		memcpy(v, p, 8);
	return p;
}

static void look_ahead(const Mem *m, const uint64_t *files, Py_ssize_t n, const FileLayout *F)
{
	uint64_t socks[LOOKAHEAD_FDS] = {0}, sks[LOOKAHEAD_FDS] = {0};
	Py_ssize_t k;
	for (k = 0; k < n; k++)
		if (files[k]) {
			mem_prefetch(m, files[k] + F->f_op, 8);
			mem_prefetch(m, files[k] + F->private_data, 8);
		}
	for (k = 0; k < n; k++) {
		uint64_t op = 0;
		if (files[k] && mapped_u64(m, files[k] + F->f_op, &op) && op == F->sock_ops &&
		    mapped_u64(m, files[k] + F->private_data, &socks[k]) && socks[k]) {
			mem_prefetch(m, socks[k] + F->socket_file, 8);
			mem_prefetch(m, socks[k] + F->socket_sk, 8);
		}
	}
	for (k = 0; k < n; k++)
		if (socks[k] && mapped_u64(m, socks[k] + F->socket_sk, &sks[k]) && sks[k])
			mem_prefetch(m, sks[k] + F->sk_socket, 8);
}

/* -- HolderMap ------------------------------------------------------------------------ */

Py_ssize_t holders_find(const HolderMap *m, uint64_t key)
{
	Py_ssize_t lo = 0, hi = m->nkeys;
	while (lo < hi) {
		Py_ssize_t mid = (lo + hi) / 2;
		if (m->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->nkeys && m->keys[lo] == key ? lo : -1;
}

Py_ssize_t *holders_of_rows(const HolderMap *m, const SockTable *t)
{
	Py_ssize_t *out = PyMem_Malloc((t->n ? t->n : 1) * sizeof(Py_ssize_t));
	KeyOrder *order = PyMem_Malloc((t->n ? t->n : 1) * sizeof(KeyOrder));
	if (!out || !order) {
		PyMem_Free(out);
		PyMem_Free(order);
		PyErr_NoMemory();
		return NULL;
	}
	for (Py_ssize_t i = 0; i < t->n; i++)
		order[i] = (KeyOrder){t->rows[i].addr, i};
	if (sort_keys(order, t->n) < 0) {
		PyMem_Free(out);
		PyMem_Free(order);
		return NULL;
	}
	Py_ssize_t j = 0;
	for (Py_ssize_t x = 0; x < t->n; x++) { /* both in address order: a merge */
		while (j < m->nkeys && m->keys[j] < order[x].key)
			j++;
		out[order[x].index] = j < m->nkeys && m->keys[j] == order[x].key ? j : -1;
	}
	PyMem_Free(order);
	return out;
}

PyObject *holders_list(const HolderMap *m, Py_ssize_t k)
{
	Py_ssize_t i = m->first[k], j = m->first[k + 1];
	PyObject *list = PyList_New(j - i);
	for (Py_ssize_t x = i; list && x < j; x++) {
		PyObject *comm = PyTuple_GET_ITEM(PyList_GET_ITEM(m->tasks, m->h[x].task), 1);
		Py_INCREF(comm);
		/* Owner(comm, pid, fd, tid): no thread here (tid 0, -T is Python's) */
		PyObject *fields[4] = {comm, PyLong_FromLongLong(m->h[x].pid), PyLong_FromLongLong(m->h[x].fd),
				       PyLong_FromLong(0)};
		PyObject *o = new_record((PyTypeObject *)m->cls, fields, 4);
		if (!o)
			Py_CLEAR(list);
		else
			PyList_SET_ITEM(list, x - i, o);
	}
	return list;
}

/* A HolderMap of holders[0..n) (sorted; taken over, freed on failure). */
static PyObject *holder_map(Holder *holders, Py_ssize_t n, PyObject *tasks, PyObject *cls)
{
	HolderMap *m = (HolderMap *)HolderMapType.tp_alloc(&HolderMapType, 0);
	if (!m) {
		PyMem_Free(holders);
		return NULL;
	}
	m->h = holders;
	m->n = n;
	m->keys = PyMem_Malloc((n ? n : 1) * sizeof(uint64_t));
	m->first = PyMem_Malloc((n + 1) * sizeof(Py_ssize_t));
	m->extra = PyDict_New();
	Py_INCREF(tasks);
	m->tasks = tasks;
	Py_INCREF(cls);
	m->cls = cls;
	if (!m->keys || !m->first || !m->extra) {
		Py_DECREF(m);
		return PyErr_Occurred() ? NULL : PyErr_NoMemory();
	}
	for (Py_ssize_t i = 0; i < n; i++)
		if (!i || holders[i].sock != holders[i - 1].sock) {
			m->keys[m->nkeys] = holders[i].sock;
			m->first[m->nkeys++] = i;
		}
	m->first[m->nkeys] = n;
	return (PyObject *)m;
}

static void hmap_dealloc(HolderMap *m)
{
	PyMem_Free(m->h);
	PyMem_Free(m->keys);
	PyMem_Free(m->first);
	Py_XDECREF(m->tasks);
	Py_XDECREF(m->cls);
	Py_XDECREF(m->extra);
	Py_TYPE(m)->tp_free((PyObject *)m);
}

/* key as an address: 1 and *v; 0 (not an address: in no map); -1 on error. */
static int hmap_key(PyObject *key, uint64_t *v)
{
	if (!PyLong_Check(key))
		return 0;
	*v = PyLong_AsUnsignedLongLong(key);
	if (*v == (uint64_t)-1 && PyErr_Occurred()) {
		if (!PyErr_ExceptionMatches(PyExc_OverflowError))
			return -1;
		PyErr_Clear();
		return 0;
	}
	return 1;
}

/* map[key] (a new reference), or NULL: with an error, or none (not there). */
static PyObject *hmap_lookup(HolderMap *m, PyObject *key)
{
	PyObject *v = PyDict_GetItemWithError(m->extra, key);
	if (v || PyErr_Occurred()) {
		Py_XINCREF(v);
		return v;
	}
	uint64_t addr;
	int r = hmap_key(key, &addr);
	Py_ssize_t k = r > 0 ? holders_find(m, addr) : -1;
	return r < 0 || k < 0 ? NULL : holders_list(m, k);
}

static Py_ssize_t hmap_len(HolderMap *m)
{
	return m->nkeys + PyDict_GET_SIZE(m->extra);
}

static PyObject *hmap_subscript(HolderMap *m, PyObject *key)
{
	PyObject *v = hmap_lookup(m, key);
	if (!v && !PyErr_Occurred())
		PyErr_SetObject(PyExc_KeyError, key);
	return v;
}

static int hmap_ass_subscript(HolderMap *m, PyObject *key, PyObject *value)
{
	uint64_t addr;
	int r = value ? hmap_key(key, &addr) : 0;
	if (r < 0)
		return -1;
	if (!value || (r > 0 && holders_find(m, addr) >= 0)) {
		PyErr_SetString(PyExc_TypeError, "HolderMap: holders found are not changed");
		return -1;
	}
	return PyDict_SetItem(m->extra, key, value);
}

static int hmap_contains(HolderMap *m, PyObject *key)
{
	PyObject *v = hmap_lookup(m, key);
	Py_XDECREF(v);
	return v ? 1 : PyErr_Occurred() ? -1 : 0;
}

static PyObject *hmap_get(HolderMap *m, PyObject *args)
{
	PyObject *key, *fallback = Py_None;
	if (!PyArg_ParseTuple(args, "O|O", &key, &fallback))
		return NULL;
	PyObject *v = hmap_lookup(m, key);
	if (!v && !PyErr_Occurred()) {
		Py_INCREF(fallback);
		return fallback;
	}
	return v;
}

/* The keys in order, then extra's, as a list. */
static PyObject *hmap_key_list(HolderMap *m)
{
	PyObject *list = PyList_New(0);
	for (Py_ssize_t k = 0; list && k < m->nkeys; k++) {
		PyObject *v = PyLong_FromUnsignedLongLong(m->keys[k]);
		if (!v || PyList_Append(list, v) < 0)
			Py_CLEAR(list);
		Py_XDECREF(v);
	}
	PyObject *more = list ? PyDict_Keys(m->extra) : NULL;
	if (more && PyList_SetSlice(list, PyList_GET_SIZE(list), PyList_GET_SIZE(list), more) < 0)
		Py_CLEAR(list);
	Py_XDECREF(more);
	if (!more)
		Py_CLEAR(list);
	return list;
}

static PyObject *hmap_iter(HolderMap *m)
{
	PyObject *list = hmap_key_list(m);
	PyObject *it = list ? PyObject_GetIter(list) : NULL;
	Py_XDECREF(list);
	return it;
}

static PyObject *hmap_keys(HolderMap *m, PyObject *unused)
{
	PyObject *list = hmap_key_list(m);
	PyObject *set = list ? PySet_New(list) : NULL;
	Py_XDECREF(list);
	return set;
}

static PyObject *hmap_items(HolderMap *m, PyObject *unused)
{
	PyObject *keys = hmap_key_list(m), *out = keys ? PyList_New(PyList_GET_SIZE(keys)) : NULL;
	for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(keys); i++) {
		PyObject *key = PyList_GET_ITEM(keys, i), *v = hmap_subscript(m, key);
		PyObject *pair = v ? PyTuple_Pack(2, key, v) : NULL;
		Py_XDECREF(v);
		if (!pair)
			Py_CLEAR(out);
		else
			PyList_SET_ITEM(out, i, pair);
	}
	Py_XDECREF(keys);
	return out;
}

static PyObject *hmap_values(HolderMap *m, PyObject *unused)
{
	PyObject *items = hmap_items(m, NULL), *out = items ? PyList_New(PyList_GET_SIZE(items)) : NULL;
	for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(items); i++) {
		PyObject *v = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
		Py_INCREF(v);
		PyList_SET_ITEM(out, i, v);
	}
	Py_XDECREF(items);
	return out;
}

static PyMappingMethods hmap_as_mapping = {
	.mp_length = (lenfunc)hmap_len,
	.mp_subscript = (binaryfunc)hmap_subscript,
	.mp_ass_subscript = (objobjargproc)hmap_ass_subscript,
};

static PySequenceMethods hmap_as_sequence = {
	.sq_contains = (objobjproc)hmap_contains,
};

static PyMethodDef hmap_methods[] = {
	{"get", (PyCFunction)hmap_get, METH_VARARGS, "get(key, default=None): map[key] if there, else default."},
	{"keys", (PyCFunction)hmap_keys, METH_NOARGS, "The keys, as a set."},
	{"items", (PyCFunction)hmap_items, METH_NOARGS, "(key, holders) pairs, in order, as a list."},
	{"values", (PyCFunction)hmap_values, METH_NOARGS, "The holders' lists, in order."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject HolderMapType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "drgn_ss._fast.HolderMap",
	.tp_basicsize = sizeof(HolderMap),
	.tp_dealloc = (destructor)hmap_dealloc,
	.tp_as_mapping = &hmap_as_mapping,
	.tp_as_sequence = &hmap_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "{struct sock address: [Owner, ...]} as socket_holders(..., as_map=True) finds them:\n"
		  "a mapping (get, in, [], len, iteration, keys, items, values) whose lists are made when\n"
		  "asked for; a key set is kept apart (MPTCP subflows), a key found cannot be changed.",
	.tp_iter = (getiterfunc)hmap_iter,
	.tp_methods = hmap_methods,
};

/*
 * holders[] in holder_cmp()'s order: by sock (a radix sort of the addresses, stable), then
 * each sock's few holders in ss's order (an insertion sort). As qsort() with holder_cmp,
 * in a fraction of its time at a million holders.
 */
static int sort_holders(Holder *holders, Py_ssize_t n)
{
	KeyOrder *order = PyMem_Malloc((n ? n : 1) * sizeof(KeyOrder));
	Holder *sorted = PyMem_Malloc((n ? n : 1) * sizeof(Holder));
	if (!order || !sorted) {
		PyMem_Free(order);
		PyMem_Free(sorted);
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++)
		order[i] = (KeyOrder){holders[i].sock, i};
	if (sort_keys(order, n) < 0) {
		PyMem_Free(order);
		PyMem_Free(sorted);
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++)
		sorted[i] = holders[order[i].index];
	for (Py_ssize_t i = 1; i < n; i++) {
		Holder h = sorted[i];
		Py_ssize_t j = i;
		while (j > 0 && holder_cmp(&sorted[j - 1], &h) > 0) {
			sorted[j] = sorted[j - 1];
			j--;
		}
		sorted[j] = h;
	}
	memcpy(holders, sorted, n * sizeof(Holder));
	PyMem_Free(order);
	PyMem_Free(sorted);
	return 0;
}

PyDoc_STRVAR(socket_holders_doc,
"socket_holders(mem, tasks, layout, cls, as_map=False)\n"
"    -> (owners, files, task_faults, file_faults, first)\n"
"\n"
"For tasks, a list of (pid, comm, files_struct address), read each file table and\n"
"return {struct sock address: [cls(comm, pid, fd), ...]} in ss's order, as\n"
"drgn_ss.owners.kernel_owners does: only for a socket file whose struct socket points\n"
"back to it (socket->file) and whose sock points back to the socket (sk->sk_socket); other\n"
"socket files are file_faults. With as_map, owners is a HolderMap: the same mapping, its\n"
"lists made when asked for.");

static PyObject *socket_holders(PyObject *self, PyObject *args)
{
	PyObject *memspec, *tasks, *layout, *cls;
	int as_map = 0;
	if (!PyArg_ParseTuple(args, "OOOO|p", &memspec, &tasks, &layout, &cls, &as_map))
		return NULL;
	if (!PyList_Check(tasks) || !PyDict_Check(layout) || !is_record_type(cls)) {
		PyErr_SetString(PyExc_TypeError, "socket_holders: bad arguments");
		return NULL;
	}
	Field max_fds_f;
	int ok = 1;
	if (parse_field(layout, "max_fds", &max_fds_f) < 0)
		return NULL;
	Py_ssize_t fdt_off = spec_int(layout, "fdt", &ok), fd_off = spec_int(layout, "fd", &ok),
		   f_op = spec_int(layout, "f_op", &ok), private_data = spec_int(layout, "private_data", &ok),
		   span = spec_int(layout, "file_span", &ok), socket_file = spec_int(layout, "socket_file", &ok),
		   socket_sk = spec_int(layout, "socket_sk", &ok), sk_socket = spec_int(layout, "sk_socket", &ok);
	PyObject *ops = PyDict_GetItemString(layout, "socket_file_ops");
	uint64_t sock_ops = ops ? PyLong_AsUnsignedLongLong(ops) : 0;
	if (!ok || PyErr_Occurred())
		return NULL;
	if (span > MAX_READ || f_op + 8 > span || private_data + 8 > span || fd_off + 8 > MAX_READ ||
	    max_fds_f.offset + max_fds_f.size > fd_off + 8 || socket_file < 0 || socket_file + 8 > MAX_READ ||
	    socket_sk < 0 || socket_sk + 8 > MAX_READ || sk_socket < 0 || sk_socket + 8 > MAX_READ) {
		PyErr_SetString(PyExc_ValueError, "socket_holders: bad layout");
		return NULL;
	}
	Mem mem;
	if (parse_mem(memspec, &mem) < 0) {
		mem_release(&mem);
		return NULL;
	}
	Faults faults = {0, 0, NULL};
	Holder *holders = NULL;
	Py_ssize_t nholders = 0, cap = 0, nfiles = 0, file_faults = 0;
	uint64_t *fds = NULL;
	size_t fds_cap = 0;
	PyObject *result = NULL, *owners = NULL;
	unsigned char buf[MAX_READ];
	Py_ssize_t ntasks = PyList_GET_SIZE(tasks);
	for (Py_ssize_t t = 0; t < ntasks; t++) {
		long long pid;
		PyObject *comm;
		unsigned long long files;
		if (!PyArg_ParseTuple(PyList_GET_ITEM(tasks, t), "LOK", &pid, &comm, &files))
			goto out;
		if (!files)
			continue;
		int r;
		uint64_t fdt;
		if ((r = mem_read(&mem, files + fdt_off, 8, buf, &faults)))
			goto fault;
		memcpy(&fdt, buf, 8);
		if ((r = mem_read(&mem, fdt, fd_off + 8, buf, &faults)))
			goto fault;
		uint64_t max_fds = get(buf, &max_fds_f), array;
		memcpy(&array, buf + fd_off, 8);
		if (max_fds > (1 << 24)) {
			fault_here(&faults, mem.fault, "file table too large: freed?", fdt);
			r = 1;
			goto fault;
		}
		if (max_fds > fds_cap) {
			uint64_t *more = PyMem_Realloc(fds, max_fds * sizeof(uint64_t));
			if (!more) {
				PyErr_NoMemory();
				goto out;
			}
			fds = more;
			fds_cap = max_fds;
		}
		if (max_fds && (r = mem_read(&mem, array, max_fds * 8, (unsigned char *)fds, &faults)))
			goto fault;
		FileLayout F = {f_op, private_data, socket_file, socket_sk, sk_socket, span, sock_ops};
		for (uint64_t fd = 0; fd < max_fds; fd++) {
			if (fd % LOOKAHEAD_FDS == 0 && mem.have_view)
				look_ahead(&mem, fds + fd, (Py_ssize_t)(max_fds - fd < LOOKAHEAD_FDS ? max_fds - fd
											: LOOKAHEAD_FDS), &F);
			if (!fds[fd])
				continue;
			nfiles++;
			if ((r = mem_read(&mem, fds[fd], span, buf, &faults)))
				goto fault;
			uint64_t op, sock;
			memcpy(&op, buf + f_op, 8);
			if (op != sock_ops)
				continue;
			memcpy(&sock, buf + private_data, 8);
			/* file->private_data is a struct socket whose file is this one, whose sk's
			 * sk_socket is that socket: anything else is damage, not an owner. */
			uint64_t file_back = 0, sk = 0, sock_back = 0;
			int rr = mem_read(&mem, sock + socket_file, 8, (unsigned char *)&file_back, &faults);
			if (!rr)
				rr = mem_read(&mem, sock + socket_sk, 8, (unsigned char *)&sk, &faults);
			if (!rr && sk)
				rr = mem_read(&mem, sk + sk_socket, 8, (unsigned char *)&sock_back, &faults);
			if (rr < 0)
				goto out;
			if (!rr && !sk && file_back == fds[fd])
				continue; /* a socket with no sock (yet, or any more): nothing to own */
			if (rr || file_back != fds[fd] || sock_back != sock) {
				if (!rr)
					fault_here(&faults, mem.fault, SOCKET_FILE_DAMAGED, fds[fd]);
				file_faults++;
				continue;
			}
			sock = sk;
			if (nholders == cap) {
				Py_ssize_t more_cap = cap ? 2 * cap : 1024;
				Holder *more = PyMem_Realloc(holders, more_cap * sizeof(Holder));
				if (!more) {
					PyErr_NoMemory();
					goto out;
				}
				holders = more;
				cap = more_cap;
			}
			holders[nholders++] = (Holder){sock, pid, (long long)fd, t};
		}
		continue;
fault:
		if (r < 0)
			goto out;
		faults.sockets++; /* counted as a task by the caller */
	}
	if (sort_holders(holders, nholders) < 0)
		goto out;
	if (as_map) {
		owners = holder_map(holders, nholders, tasks, cls);
		holders = NULL; /* the map's now */
		if (!owners)
			goto out;
		result = Py_BuildValue("OnnnO", owners, nfiles, faults.sockets, file_faults,
				       faults.first ? faults.first : Py_None);
		goto out;
	}
	owners = PyDict_New();
	if (!owners)
		goto out;
	PyTypeObject *type = (PyTypeObject *)cls;
	for (Py_ssize_t i = 0; i < nholders;) {
		Py_ssize_t j = i;
		while (j < nholders && holders[j].sock == holders[i].sock)
			j++;
		PyObject *list = PyList_New(j - i);
		if (!list)
			goto out;
		for (Py_ssize_t k = i; k < j; k++) {
			PyObject *comm = PyTuple_GET_ITEM(PyList_GET_ITEM(tasks, holders[k].task), 1);
			Py_INCREF(comm);
			/* Owner(comm, pid, fd, tid): no thread here (tid 0, -T is Python's) */
			PyObject *fields[4] = {comm, PyLong_FromLongLong(holders[k].pid),
					       PyLong_FromLongLong(holders[k].fd), PyLong_FromLong(0)};
			PyObject *o = new_record(type, fields, 4);
			if (!o) {
				Py_DECREF(list);
				goto out;
			}
			PyList_SET_ITEM(list, k - i, o);
		}
		PyObject *key = PyLong_FromUnsignedLongLong(holders[i].sock);
		int rr = key ? PyDict_SetItem(owners, key, list) : -1;
		Py_XDECREF(key);
		Py_DECREF(list);
		if (rr < 0)
			goto out;
		i = j;
	}
	result = Py_BuildValue("OnnnO", owners, nfiles, faults.sockets, file_faults,
			       faults.first ? faults.first : Py_None);
out:
	Py_XDECREF(owners);
	Py_XDECREF(faults.first);
	PyMem_Free(holders);
	PyMem_Free(fds);
	mem_release(&mem);
	return result;
}

PyMethodDef fast_owners_methods[] = {
	{"socket_holders", socket_holders, METH_VARARGS, socket_holders_doc},
	{NULL, NULL, 0, NULL},
};
