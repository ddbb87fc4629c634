/*
 * drgn_ss._fast.SockTable: inet sockets as compact rows (TRow, _fast.h), each made a
 * drgn_ss.sockets.record.Socket only when asked for. Reference: drgn_ss.sockets.record.Socket
 * and the records drgn_ss.sockets.inet.InetDecoder makes (the tests compare them).
 *
 * The C walk (walk_sockets, given a table) decodes every socket into a row of about 140
 * bytes instead of a record of 24 Python objects (some 600 bytes, and 24 allocations):
 * at 1,000,000 sockets that is the walk's time and most of a listing's memory. What a
 * listing does with its sockets works on the rows: ss's order of families (order_families),
 * the selection of states, tables and families (select), the owners' keys (keys) and the
 * cells of the columns (drgn_ss._fast.table_cells). Anything else reads records: a table
 * is a sequence of them (len, [i], iteration), made one at a time.
 */
#include "_fast.h"

PyObject *ms_until(uint64_t now, long long hz, uint64_t expires)
{
	int64_t delta = (int64_t)(expires - now);
	if (delta <= 0)
		return PyLong_FromLong(0);
	unsigned __int128 ms = (unsigned __int128)(uint64_t)delta * 1000 / (unsigned long long)hz;
	if (!(ms >> 64))
		return PyLong_FromUnsignedLongLong((unsigned long long)ms);
	/* Garbage from a freed socket, as big as Python makes it. */
	PyObject *d = PyLong_FromLongLong(delta), *k = PyLong_FromLong(1000), *h = PyLong_FromLongLong(hz);
	PyObject *p = d && k ? PyNumber_Multiply(d, k) : NULL;
	PyObject *q = p && h ? PyNumber_FloorDivide(p, h) : NULL;
	Py_XDECREF(d);
	Py_XDECREF(k);
	Py_XDECREF(h);
	Py_XDECREF(p);
	return q;
}

TRow *table_push(SockTable *t)
{
	if (t->n == t->cap) {
		Py_ssize_t cap = t->cap ? t->cap * 2 : 1024;
		TRow *more = PyMem_Realloc(t->rows, (size_t)cap * sizeof(TRow));
		if (!more) {
			PyErr_NoMemory();
			return NULL;
		}
		t->rows = more;
		t->cap = cap;
	}
	TRow *row = &t->rows[t->n++];
	memset(row, 0, sizeof(*row));
	return row;
}

int table_proto(SockTable *t, PyObject *proto)
{
	for (int i = 0; i < t->nprotos; i++) {
		int eq = PyObject_RichCompareBool(t->protos[i], proto, Py_EQ);
		if (eq)
			return eq < 0 ? -1 : i;
	}
	if (t->nprotos == TABLE_PROTOS) {
		PyErr_SetString(PyExc_ValueError, "SockTable: too many tables");
		return -1;
	}
	Py_INCREF(proto);
	t->protos[t->nprotos] = proto;
	return t->nprotos++;
}

/* A field's value as field_int() made it: negative where the walk said so. */
static PyObject *int_of(uint64_t v, int negative)
{
	return negative ? PyLong_FromLongLong((long long)v) : PyLong_FromUnsignedLongLong(v);
}

static PyObject *bool_or_none(uint8_t v6only)
{
	PyObject *v = v6only == ROW_V6ONLY_NONE ? Py_None : v6only == ROW_V6ONLY_TRUE ? Py_True : Py_False;
	Py_INCREF(v);
	return v;
}

PyObject *table_record(SockTable *t, Py_ssize_t i)
{
	const TRow *r = &t->rows[i];
	PyObject *items[SOCKET_FIELDS] = {NULL};
	int alen = r->family == 10 ? 16 : 4;
	items[0] = t->protos[r->proto];
	Py_INCREF(items[0]);
	items[1] = PyLong_FromLong(r->family);
	items[2] = PyLong_FromLong(r->state);
	items[3] = PyBytes_FromStringAndSize((const char *)r->src, alen);
	items[4] = PyLong_FromLong(r->sport);
	items[5] = PyBytes_FromStringAndSize((const char *)r->dst, alen);
	items[6] = PyLong_FromLong(r->dport);
	items[7] = int_of(r->ifindex, r->neg & ROW_NEG_IFINDEX);
	items[8] = bool_or_none(r->v6only);
	items[9] = PyLong_FromLongLong(r->recv_q);
	items[10] = PyLong_FromLongLong(r->send_q);
	items[11] = int_of(r->ino, r->neg & ROW_NEG_INO);
	items[12] = int_of(r->uid, r->neg & ROW_NEG_UID);
	items[13] = int_of(r->cookie, r->neg & ROW_NEG_COOKIE);
	items[14] = PyLong_FromUnsignedLongLong(r->netns);
	if (r->flags & ROW_NO_SHUTDOWN) {
		Py_INCREF(Py_None);
		items[15] = Py_None;
	} else {
		items[15] = int_of(r->shutdown, r->neg & ROW_NEG_SHUTDOWN);
	}
	Py_INCREF(Py_None);
	items[16] = Py_None; /* cgroup: the C walk does not resolve them */
	items[17] = t->kinds[r->kind];
	Py_INCREF(items[17]);
	items[18] = PyLong_FromUnsignedLongLong(r->addr);
	items[19] = PyLong_FromLong(r->timer);
	items[20] = r->flags & ROW_TIMER_MS ? ms_until(t->now, t->hz, r->expires) : PyLong_FromLong(0);
	items[21] = int_of(r->retrans, r->neg & ROW_NEG_RETRANS);
	items[22] = PyLong_FromUnsignedLongLong(r->sk_socket);
	Py_INCREF(Py_None);
	items[23] = Py_None; /* extra: inet sockets have none */
	return new_record((PyTypeObject *)t->cls, items, SOCKET_FIELDS);
}

static SockTable *table_like(SockTable *t)
{
	SockTable *o = (SockTable *)SockTableType.tp_alloc(&SockTableType, 0);
	if (!o)
		return NULL;
	Py_INCREF(t->cls);
	o->cls = t->cls;
	for (int k = 0; k < 3; k++) {
		Py_INCREF(t->kinds[k]);
		o->kinds[k] = t->kinds[k];
	}
	for (int k = 0; k < t->nprotos; k++) {
		Py_INCREF(t->protos[k]);
		o->protos[k] = t->protos[k];
	}
	o->nprotos = t->nprotos;
	o->now = t->now;
	o->hz = t->hz;
	return o;
}

static int table_append(SockTable *o, const TRow *r)
{
	TRow *row = table_push(o);
	if (!row)
		return -1;
	*row = *r;
	return 0;
}

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	PyObject *cls, *kinds;
	unsigned long long now;
	long long hz;
	if (!PyArg_ParseTuple(args, "OOKL", &cls, &kinds, &now, &hz))
		return NULL;
	if (!is_record_type(cls) || hz <= 0) {
		PyErr_SetString(PyExc_TypeError, "SockTable(cls, (full, timewait, request), now, hz)");
		return NULL;
	}
	SockTable *t = (SockTable *)type->tp_alloc(type, 0);
	if (!t)
		return NULL;
	if (!PyArg_ParseTuple(kinds, "OOO", &t->kinds[0], &t->kinds[1], &t->kinds[2])) {
		Py_DECREF(t);
		return NULL;
	}
	for (int k = 0; k < 3; k++)
		Py_INCREF(t->kinds[k]);
	Py_INCREF(cls);
	t->cls = cls;
	t->now = now;
	t->hz = hz;
	return (PyObject *)t;
}

static void table_dealloc(SockTable *t)
{
	PyMem_Free(t->rows);
	Py_XDECREF(t->cls);
	for (int k = 0; k < 3; k++)
		Py_XDECREF(t->kinds[k]);
	for (int k = 0; k < t->nprotos; k++)
		Py_XDECREF(t->protos[k]);
	Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t table_len(SockTable *t)
{
	return t->n;
}

static PyObject *table_item(SockTable *t, Py_ssize_t i)
{
	if (i < 0 || i >= t->n) {
		PyErr_SetString(PyExc_IndexError, "SockTable index out of range");
		return NULL;
	}
	return table_record(t, i);
}

/* The index in o->protos of t's proto k (added to o if new). */
static int proto_in(SockTable *o, SockTable *t, int k)
{
	return o == t ? k : table_proto(o, t->protos[k]);
}

static PyObject *table_extend(SockTable *t, PyObject *arg)
{
	if (!SockTable_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "SockTable.extend: a SockTable");
		return NULL;
	}
	SockTable *o = (SockTable *)arg;
	int map[TABLE_PROTOS];
	for (int k = 0; k < o->nprotos; k++)
		if ((map[k] = proto_in(t, o, k)) < 0)
			return NULL;
	Py_ssize_t n = o->n; /* t.extend(t): the rows it had */
	for (Py_ssize_t i = 0; i < n; i++) {
		TRow r = o->rows[i];
		r.proto = (uint8_t)map[r.proto];
		if (table_append(t, &r) < 0)
			return NULL;
	}
	Py_RETURN_NONE;
}

/*
 * The rows of each family of the tuple in turn, each in order, in place (rows of other
 * families are dropped): the first family's rows are moved up, the others' copied aside
 * (IPv6 is the fewer), so no second table is made. None.
 */
static PyObject *table_order_families(SockTable *t, PyObject *families)
{
	if (!PyTuple_Check(families) || PyTuple_GET_SIZE(families) < 1) {
		PyErr_SetString(PyExc_TypeError, "SockTable.order_families: a tuple of families");
		return NULL;
	}
	Py_ssize_t nf = PyTuple_GET_SIZE(families), rest = 0, kept = 0;
	long first = PyLong_AsLong(PyTuple_GET_ITEM(families, 0));
	if (first == -1 && PyErr_Occurred())
		return NULL;
	for (Py_ssize_t i = 0; i < t->n; i++)
		rest += t->rows[i].family != first;
	TRow *aside = PyMem_Malloc((rest ? rest : 1) * sizeof(TRow));
	if (!aside)
		return PyErr_NoMemory();
	rest = 0;
	for (Py_ssize_t i = 0; i < t->n; i++) {
		if (t->rows[i].family == first)
			t->rows[kept++] = t->rows[i];
		else
			aside[rest++] = t->rows[i];
	}
	Py_ssize_t n = kept;
	for (Py_ssize_t f = 1; f < nf; f++) {
		long family = PyLong_AsLong(PyTuple_GET_ITEM(families, f));
		if (family == -1 && PyErr_Occurred()) {
			PyMem_Free(aside);
			return NULL;
		}
		for (Py_ssize_t i = 0; i < rest; i++)
			if (aside[i].family == family && family != first)
				t->rows[n++] = aside[i];
	}
	t->n = n;
	PyMem_Free(aside);
	Py_RETURN_NONE;
}

/* Whether row r of t is in: its table in protos (a set), its family in families, its state's bit in states. */
static int row_selected(const TRow *r, const int *proto_in_set, PyObject *families, unsigned long long states)
{
	if (!proto_in_set[r->proto] || r->state >= 64 || !(states >> r->state & 1))
		return 0;
	for (Py_ssize_t f = 0; f < PyTuple_GET_SIZE(families); f++)
		if (PyLong_AsLong(PyTuple_GET_ITEM(families, f)) == r->family)
			return 1;
	return 0;
}

static PyObject *table_select(SockTable *t, PyObject *args)
{
	PyObject *protos, *families;
	unsigned long long states;
	if (!PyArg_ParseTuple(args, "O!O!K", &PySet_Type, &protos, &PyTuple_Type, &families, &states))
		return NULL;
	int in_set[TABLE_PROTOS];
	for (int k = 0; k < t->nprotos; k++)
		if ((in_set[k] = PySet_Contains(protos, t->protos[k])) < 0)
			return NULL;
	Py_ssize_t i = 0;
	while (i < t->n && row_selected(&t->rows[i], in_set, families, states))
		i++;
	if (PyErr_Occurred())
		return NULL;
	if (i == t->n) { /* every row: the table as it is */
		Py_INCREF(t);
		return (PyObject *)t;
	}
	SockTable *o = table_like(t);
	if (!o)
		return NULL;
	for (i = 0; i < t->n; i++)
		if (row_selected(&t->rows[i], in_set, families, states) && table_append(o, &t->rows[i]) < 0) {
			Py_DECREF(o);
			return NULL;
		}
	return (PyObject *)o;
}

static PyObject *table_keys(SockTable *t, PyObject *name)
{
	const char *which = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
	int k = !which ? -1 : !strcmp(which, "ino") ? 0 : !strcmp(which, "address") ? 1 :
		!strcmp(which, "ifindex") ? 2 : -1;
	if (k < 0) {
		PyErr_SetString(PyExc_ValueError, "SockTable.keys: 'ino', 'address' or 'ifindex'");
		return NULL;
	}
	PyObject *out = PyList_New(t->n);
	for (Py_ssize_t i = 0; out && i < t->n; i++) {
		const TRow *r = &t->rows[i];
		PyObject *v = k == 0 ? int_of(r->ino, r->neg & ROW_NEG_INO) : k == 1 ? PyLong_FromUnsignedLongLong(r->addr)
			: int_of(r->ifindex, r->neg & ROW_NEG_IFINDEX);
		if (!v) {
			Py_CLEAR(out);
			break;
		}
		PyList_SET_ITEM(out, i, v);
	}
	return out;
}

static PyObject *table_protos(SockTable *t, PyObject *unused)
{
	PyObject *out = PyTuple_New(t->nprotos);
	for (int k = 0; out && k < t->nprotos; k++) {
		Py_INCREF(t->protos[k]);
		PyTuple_SET_ITEM(out, k, t->protos[k]);
	}
	return out;
}

static PyObject *table_any_ifindex(SockTable *t, PyObject *unused)
{
	for (Py_ssize_t i = 0; i < t->n; i++)
		if (t->rows[i].ifindex)
			Py_RETURN_TRUE;
	Py_RETURN_FALSE;
}

/* (address, sk_socket) of each row of a table proto whose sock owners (a HolderMap) lacks. */
static PyObject *table_unheld(SockTable *t, PyObject *args)
{
	PyObject *proto;
	HolderMap *m;
	if (!PyArg_ParseTuple(args, "OO!", &proto, &HolderMapType, &m))
		return NULL;
	int want = -1;
	for (int k = 0; k < t->nprotos; k++) {
		int eq = PyObject_RichCompareBool(t->protos[k], proto, Py_EQ);
		if (eq < 0)
			return NULL;
		if (eq)
			want = k;
	}
	Py_ssize_t *holder_of = holders_of_rows(m, t);
	PyObject *out = holder_of ? PyList_New(0) : NULL;
	for (Py_ssize_t i = 0; out && i < t->n; i++) {
		const TRow *r = &t->rows[i];
		if (r->proto != want || !r->sk_socket || holder_of[i] >= 0)
			continue;
		PyObject *pair = Py_BuildValue("KK", (unsigned long long)r->addr, (unsigned long long)r->sk_socket);
		if (!pair || PyList_Append(out, pair) < 0)
			Py_CLEAR(out);
		Py_XDECREF(pair);
	}
	PyMem_Free(holder_of);
	return out;
}

static PySequenceMethods table_as_sequence = {
	.sq_length = (lenfunc)table_len,
	.sq_item = (ssizeargfunc)table_item,
};

static PyMethodDef table_methods[] = {
	{"extend", (PyCFunction)table_extend, METH_O, "Append another table's rows."},
	{"order_families", (PyCFunction)table_order_families, METH_O,
	 "In place: the rows of each family of the tuple in turn, each in order (others dropped)."},
	{"select", (PyCFunction)table_select, METH_VARARGS,
	 "select(protos, families, states) -> the rows whose table is in the set protos, family in the\n"
	 "tuple families and state's bit in states, in order: this table if that is every row."},
	{"keys", (PyCFunction)table_keys, METH_O,
	 "keys('ino' | 'address' | 'ifindex') -> that field of every row, a list of ints."},
	{"protos", (PyCFunction)table_protos, METH_NOARGS, "The tables (netids) rows may name."},
	{"any_ifindex", (PyCFunction)table_any_ifindex, METH_NOARGS, "Whether a row is bound to a device."},
	{"unheld", (PyCFunction)table_unheld, METH_VARARGS,
	 "unheld(proto, owners) -> [(address, sk_socket), ...] of the rows of table proto with a\n"
	 "struct socket whose sock owners (a HolderMap) lacks, in order."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject SockTableType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "drgn_ss._fast.SockTable",
	.tp_basicsize = sizeof(SockTable),
	.tp_dealloc = (destructor)table_dealloc,
	.tp_as_sequence = &table_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "SockTable(cls, (full, timewait, request), now, hz) -> inet sockets as compact rows,\n"
		  "a sequence of cls records made on demand; walk_sockets(..., out=table) fills it.",
	.tp_methods = table_methods,
	.tp_new = table_new,
};
