/*
 * drgn_ss._fast, owners: every process's open sockets, socket_holders().
 * Reference: drgn_ss.owners (kernel_owners).
 */
#include "_fast.h"

/* drgn_ss.owners.SOCKET_FILE_DAMAGED */
#define SOCKET_FILE_DAMAGED "a socket file, its socket and its sock do not point at each other: damaged"

typedef struct {
	uint64_t sock; /* the struct sock's address */
	long long pid;
	long long fd;
	Py_ssize_t task; /* index into the tasks list, for the comm */
} Holder;

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

PyDoc_STRVAR(socket_holders_doc,
"socket_holders(mem, tasks, layout, cls) -> (owners, files, task_faults, file_faults, first)\n"
"\n"
"For tasks, a list of (pid, comm, files_struct address), read each file table and\n"
"return {struct sock address: [cls(comm, pid, fd), ...]} in ss's order, as\n"
"drgn_ss.owners.kernel_owners does: only for a socket file whose struct socket points\n"
"back to it (socket->file) and whose sock points back to the socket (sk->sk_socket); other\n"
"socket files are file_faults.");

static PyObject *socket_holders(PyObject *self, PyObject *args)
{
	PyObject *memspec, *tasks, *layout, *cls;
	if (!PyArg_ParseTuple(args, "OOOO", &memspec, &tasks, &layout, &cls))
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
		for (uint64_t fd = 0; fd < max_fds; fd++) {
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
	qsort(holders, nholders, sizeof(Holder), holder_cmp);
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
