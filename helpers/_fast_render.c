/*
 * drgn_ss._fast, rendering: ss's cells, its buffer accounting, and padded lines
 * (socket_cells, users_cells, render_breaks, max_lengths, format_lines).
 * Reference: drgn_ss.output.text (Formatter.columns, Formatter.users, TokenBuffer, layout_columns).
 */
#include "_fast.h"

/* columns: a list of lists of str, all as long; their number (at most 64) and length. */
static int check_columns(PyObject *columns, Py_ssize_t *ncols, Py_ssize_t *nrows)
{
	if (!PyList_Check(columns) || PyList_GET_SIZE(columns) > 64) {
		PyErr_SetString(PyExc_TypeError, "columns: a list of at most 64 lists");
		return -1;
	}
	*ncols = PyList_GET_SIZE(columns);
	*nrows = 0;
	for (Py_ssize_t c = 0; c < *ncols; c++) {
		PyObject *col = PyList_GET_ITEM(columns, c);
		if (!PyList_Check(col) || (c && PyList_GET_SIZE(col) != *nrows)) {
			PyErr_SetString(PyExc_TypeError, "columns: lists of cells, all as long");
			return -1;
		}
		*nrows = PyList_GET_SIZE(col);
	}
	return 0;
}

/* A cell's length as ss counts it: bytes of UTF-8. -1 on error. */
static inline Py_ssize_t cell_bytes(PyObject *cell)
{
	if (!PyUnicode_Check(cell)) {
		PyErr_SetString(PyExc_TypeError, "cells are str");
		return -1;
	}
	if (PyUnicode_IS_ASCII(cell))
		return PyUnicode_GET_LENGTH(cell);
	Py_ssize_t n;
	return PyUnicode_AsUTF8AndSize(cell, &n) ? n : -1;
}

static int check_range(Py_ssize_t start, Py_ssize_t stop, Py_ssize_t nrows)
{
	if (start < 0 || stop < start || stop > nrows) {
		PyErr_SetString(PyExc_IndexError, "rows out of range");
		return -1;
	}
	return 0;
}

/* misc/ss.c's output buffer, as drgn_ss.output.columns.TokenBuffer (the reference). */
#define BUF_CHUNK_DATA (1024 * 1024 - 16)
#define BUF_CHUNKS_MAX 5

typedef struct {
	Py_ssize_t chunks, used;
} Tokens;

static void tokens_write(Tokens *t, Py_ssize_t n)
{
	if (n == 0)
		return;
	if (!t->chunks) {
		t->chunks = 1;
		t->used = 2;
	}
	if (n < BUF_CHUNK_DATA - t->used) {
		t->used += n;
	} else {
		t->chunks++;
		t->used = 2 + n;
	}
}

static void tokens_flush(Tokens *t, Py_ssize_t n)
{
	Py_ssize_t pad = n & 1;
	if (BUF_CHUNK_DATA - t->used - pad < 2) {
		t->chunks++;
		t->used = 2;
	} else {
		t->used += pad + 2;
	}
}

PyDoc_STRVAR(render_breaks_doc,
"render_breaks(columns) -> list[int]\n"
"\n"
"The rows after which ss renders what it has buffered, for rows of these columns of\n"
"cells (the header row first), as drgn_ss.output.columns.TokenBuffer.add_line says.");

static PyObject *render_breaks(PyObject *self, PyObject *args)
{
	PyObject *columns;
	Py_ssize_t ncols, nrows;
	if (!PyArg_ParseTuple(args, "O", &columns) || check_columns(columns, &ncols, &nrows) < 0)
		return NULL;
	PyObject *out = PyList_New(0);
	if (!out || !ncols)
		return out;
	Tokens t = {0, 0};
	for (Py_ssize_t r = 0; r < nrows; r++) {
		Py_ssize_t n = 0;
		for (Py_ssize_t c = 0; c < ncols; c++) {
			n = cell_bytes(PyList_GET_ITEM(PyList_GET_ITEM(columns, c), r));
			if (n < 0)
				goto error;
			tokens_write(&t, n);
			if (c < ncols - 1)
				tokens_flush(&t, n);
		}
		if (t.chunks >= BUF_CHUNKS_MAX) {
			t.chunks = t.used = 0;
			PyObject *row = PyLong_FromSsize_t(r);
			int rr = row ? PyList_Append(out, row) : -1;
			Py_XDECREF(row);
			if (rr < 0)
				goto error;
		} else {
			tokens_flush(&t, n);
		}
	}
	return out;
error:
	Py_DECREF(out);
	return NULL;
}

PyDoc_STRVAR(max_lengths_doc,
"max_lengths(columns, start, stop) -> list[int]\n"
"\n"
"The longest cell of each column in rows [start, stop), in bytes (0 for no rows).");

static PyObject *max_lengths(PyObject *self, PyObject *args)
{
	PyObject *columns;
	Py_ssize_t ncols, nrows, start, stop;
	if (!PyArg_ParseTuple(args, "Onn", &columns, &start, &stop) ||
	    check_columns(columns, &ncols, &nrows) < 0 || check_range(start, stop, nrows) < 0)
		return NULL;
	PyObject *out = PyList_New(ncols);
	if (!out)
		return NULL;
	for (Py_ssize_t c = 0; c < ncols; c++) {
		PyObject *col = PyList_GET_ITEM(columns, c);
		Py_ssize_t longest = 0;
		for (Py_ssize_t r = start; r < stop; r++) {
			Py_ssize_t n = cell_bytes(PyList_GET_ITEM(col, r));
			if (n < 0) {
				Py_DECREF(out);
				return NULL;
			}
			if (n > longest)
				longest = n;
		}
		PyObject *v = PyLong_FromSsize_t(longest);
		if (!v) {
			Py_DECREF(out);
			return NULL;
		}
		PyList_SET_ITEM(out, c, v);
	}
	return out;
}

/* A growing byte buffer. */
typedef struct {
	char *data;
	Py_ssize_t len, cap;
} Buf;

/* Room for n more bytes. */
static int buf_reserve(Buf *b, Py_ssize_t n)
{
	if (b->len + n > b->cap) {
		Py_ssize_t cap = (b->len + n) * 2 + 64;
		char *data = PyMem_Realloc(b->data, cap);
		if (!data) {
			PyErr_NoMemory();
			return -1;
		}
		b->data = data;
		b->cap = cap;
	}
	return 0;
}

static int buf_add(Buf *b, const char *s, Py_ssize_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	return 0;
}

PyDoc_STRVAR(format_lines_doc,
"format_lines(columns, start, stop, pads, right, delims) -> str | None\n"
"\n"
"Rows [start, stop) of these columns, a line each: each cell after its delimiter and\n"
"padded to pads[i] characters (to the left if right[i], else to the right), as\n"
"drgn_ss.output.text's str.format() line does. None if a cell is not ASCII (padding then\n"
"counts bytes: Python does it).");

static PyObject *format_lines(PyObject *self, PyObject *args)
{
	PyObject *columns, *pads_obj, *right_obj, *delims_obj;
	Py_ssize_t ncols, nrows, start, stop;
	if (!PyArg_ParseTuple(args, "OnnO!O!O!", &columns, &start, &stop, &PyList_Type, &pads_obj,
			      &PyList_Type, &right_obj, &PyList_Type, &delims_obj) ||
	    check_columns(columns, &ncols, &nrows) < 0 || check_range(start, stop, nrows) < 0)
		return NULL;
	if (PyList_GET_SIZE(pads_obj) != ncols || PyList_GET_SIZE(right_obj) != ncols ||
	    PyList_GET_SIZE(delims_obj) != ncols) {
		PyErr_SetString(PyExc_ValueError, "format_lines: one pad, alignment and delimiter a column");
		return NULL;
	}
	Py_ssize_t pads[64];
	int right[64];
	const char *delim[64];
	Py_ssize_t dlen[64];
	PyObject *cols[64];
	for (Py_ssize_t c = 0; c < ncols; c++) {
		cols[c] = PyList_GET_ITEM(columns, c);
		pads[c] = PyLong_AsSsize_t(PyList_GET_ITEM(pads_obj, c));
		right[c] = PyObject_IsTrue(PyList_GET_ITEM(right_obj, c));
		PyObject *d = PyList_GET_ITEM(delims_obj, c);
		if (!PyUnicode_Check(d) || !PyUnicode_IS_ASCII(d)) {
			PyErr_SetString(PyExc_TypeError, "format_lines: ASCII delimiters");
			return NULL;
		}
		delim[c] = (const char *)PyUnicode_1BYTE_DATA(d);
		dlen[c] = PyUnicode_GET_LENGTH(d);
	}
	if (PyErr_Occurred())
		return NULL;
	/* One pass into a buffer as long as the lines would be if no cell passed its pad. */
	Py_ssize_t line = 1;
	for (Py_ssize_t c = 0; c < ncols; c++)
		line += dlen[c] + pads[c];
	Buf b = {NULL, 0, 0};
	if (buf_reserve(&b, line * (stop - start)) < 0)
		return NULL;
	PyObject *out = NULL;
	for (Py_ssize_t r = start; r < stop; r++) {
		for (Py_ssize_t c = 0; c < ncols; c++) {
			PyObject *cell = PyList_GET_ITEM(cols[c], r);
			if (!PyUnicode_Check(cell)) {
				PyErr_SetString(PyExc_TypeError, "format_lines: cells are str");
				goto done;
			}
			if (!PyUnicode_IS_ASCII(cell)) {
				out = Py_None;
				Py_INCREF(out);
				goto done;
			}
			Py_ssize_t n = PyUnicode_GET_LENGTH(cell), fill = pads[c] > n ? pads[c] - n : 0;
			if (buf_reserve(&b, dlen[c] + fill + n + 1) < 0)
				goto done;
			char *p = b.data + b.len;
			memcpy(p, delim[c], dlen[c]);
			p += dlen[c];
			if (right[c]) {
				memset(p, ' ', fill);
				p += fill;
			}
			memcpy(p, PyUnicode_1BYTE_DATA(cell), n);
			p += n;
			if (!right[c]) {
				memset(p, ' ', fill);
				p += fill;
			}
			b.len = p - b.data;
		}
		b.data[b.len++] = '\n';
	}
	out = PyUnicode_New(b.len, 127);
	if (out)
		memcpy(PyUnicode_1BYTE_DATA(out), b.data, b.len);
done:
	PyMem_Free(b.data);
	return out;
}

/* cache[key], which may make it (a dict subclass with __missing__); a new reference. */
static PyObject *cached(PyObject *cache, PyObject *key)
{
	PyObject *v = PyDict_GetItemWithError(cache, key);
	if (v) {
		Py_INCREF(v);
		return v;
	}
	return PyErr_Occurred() ? NULL : PyObject_GetItem(cache, key);
}

PyDoc_STRVAR(users_cells_doc,
"users_cells(keys, owners, names) -> list[str]\n"
"\n"
"ss's Process cell for each key: ' users:((\"name\",pid=P,fd=F),...)' from owners[key]\n"
"(tuples of comm, pid, fd), the name being names[comm]; '' for 0 or a key not in owners.\n"
"As drgn_ss.output.text.Formatter.users.");


/*
 * order[] in increasing order of `passes` 16-bit digits of its keys from bit lo up (an LSD
 * radix sort, stable): passes is even, so the sorted keys end back in order[].
 */
static int radix_sort(KeyOrder *order, Py_ssize_t n, int lo, int passes)
{
	KeyOrder *tmp = PyMem_Malloc((n ? n : 1) * sizeof(KeyOrder));
	Py_ssize_t *count = PyMem_Malloc(65536 * sizeof(Py_ssize_t));
	if (!tmp || !count) {
		PyMem_Free(tmp);
		PyMem_Free(count);
		PyErr_NoMemory();
		return -1;
	}
	KeyOrder *from = order, *to = tmp;
	for (int shift = lo; shift < lo + 16 * passes; shift += 16) {
		memset(count, 0, 65536 * sizeof(Py_ssize_t));
		for (Py_ssize_t i = 0; i < n; i++)
			count[(from[i].key >> shift) & 0xffff]++;
		Py_ssize_t sum = 0;
		for (int d = 0; d < 65536; d++) {
			Py_ssize_t c = count[d];
			count[d] = sum;
			sum += c;
		}
		for (Py_ssize_t i = 0; i < n; i++)
			to[count[(from[i].key >> shift) & 0xffff]++] = from[i];
		KeyOrder *t = from;
		from = to;
		to = t;
	}
	PyMem_Free(tmp);
	PyMem_Free(count);
	return 0;
}

/*
 * Put order[] in increasing order of bits 6..37 of its keys: enough to visit slab objects
 * by address, whatever the higher bits (for locality only).
 */
static int sort_by_address(KeyOrder *order, Py_ssize_t n)
{
	return radix_sort(order, n, 6, 2);
}

int sort_keys(KeyOrder *order, Py_ssize_t n)
{
	return radix_sort(order, n, 0, 4);
}

/* n in decimal at p; the number of characters. */
static int put_decimal(char *p, long long n)
{
	char digits[24];
	int len = 0, neg = n < 0;
	unsigned long long u = neg ? 0ULL - (unsigned long long)n : (unsigned long long)n;
	do {
		digits[len++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	int out = 0;
	if (neg)
		p[out++] = '-';
	while (len)
		p[out++] = digits[--len];
	return out;
}

/* One holder's '("name",pid=P,fd=F)' into b, after a comma unless it is the first. */
static int holder_text(Buf *b, int first, PyObject *name, long long pid, long long fd)
{
	Py_ssize_t nlen;
	const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &nlen) : NULL;
	if (!text) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "users cells: names are str");
		return -1;
	}
	char num[64];
	int m = 6;
	memcpy(num, "\",pid=", 6);
	m += put_decimal(num + m, pid);
	memcpy(num + m, ",fd=", 4);
	m += 4 + put_decimal(num + m + 4, fd);
	num[m++] = ')';
	return (first ? buf_add(b, "(\"", 2) : buf_add(b, ",(\"", 3)) < 0 || buf_add(b, text, nlen) < 0 ||
	       buf_add(b, num, m) < 0 ? -1 : 0;
}

/* ' users:(...)' of holders, a list of (comm, pid, fd) records, into b (emptied first). */
static int owners_text(Buf *b, PyObject *holders, PyObject *names)
{
	b->len = 0;
	if (buf_add(b, " users:(", 8) < 0)
		return -1;
	for (Py_ssize_t k = 0; k < PyList_GET_SIZE(holders); k++) {
		PyObject *h = PyList_GET_ITEM(holders, k);
		if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) < 3) {
			PyErr_SetString(PyExc_TypeError, "users_cells: holders are (comm, pid, fd)");
			return -1;
		}
		PyObject *name = cached(names, PyTuple_GET_ITEM(h, 0));
		if (!name)
			return -1;
		long long pid = PyLong_AsLongLong(PyTuple_GET_ITEM(h, 1));
		long long fd = PyLong_AsLongLong(PyTuple_GET_ITEM(h, 2));
		int r = PyErr_Occurred() ? -1 : holder_text(b, k == 0, name, pid, fd);
		Py_DECREF(name);
		if (r < 0)
			return -1;
	}
	return buf_add(b, ")", 1);
}

static PyObject *users_cells(PyObject *self, PyObject *args)
{
	PyObject *keys, *owners, *names;
	if (!PyArg_ParseTuple(args, "OO!O!", &keys, &PyDict_Type, &owners, &PyDict_Type, &names))
		return NULL;
	PyObject *seq = PySequence_Fast(keys, "users_cells: keys must be a sequence");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject *out = PyList_New(n), *empty = PyUnicode_FromString("");
	Buf b = {NULL, 0, 0};
	/*
	 * Keys are looked up in increasing order: owners was filled in that order (by
	 * socket_holders), so its entries and their holders lie in memory in that order too,
	 * and a sorted pass reads them about 3x faster than the listing's hash order.
	 */
	KeyOrder *order = PyMem_Malloc((n ? n : 1) * sizeof(KeyOrder));
	if (!out || !empty || !order)
		goto error;
	for (Py_ssize_t i = 0; i < n; i++) {
		order[i].index = i;
		order[i].key = PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(seq, i));
		if (PyErr_Occurred())
			goto error;
	}
	if (sort_by_address(order, n) < 0)
		goto error;
	for (Py_ssize_t j = 0; j < n; j++) {
		Py_ssize_t i = order[j].index;
		PyObject *cell = NULL, *holders = NULL;
		if (order[j].key) { /* a new int: the listing's one lies elsewhere in memory */
			PyObject *key = PyLong_FromUnsignedLongLong(order[j].key);
			if (!key)
				goto error;
			holders = PyDict_GetItemWithError(owners, key);
			Py_DECREF(key);
			if (!holders && PyErr_Occurred())
				goto error;
		}
		if (!holders || !PyList_Check(holders) || PyList_GET_SIZE(holders) == 0) {
			Py_INCREF(empty);
			PyList_SET_ITEM(out, i, empty);
			continue;
		}
		if (owners_text(&b, holders, names) < 0)
			goto error;
		cell = PyUnicode_DecodeUTF8(b.data, b.len, "strict");
		if (!cell)
			goto error;
		PyList_SET_ITEM(out, i, cell);
	}
	Py_DECREF(seq);
	Py_DECREF(empty);
	PyMem_Free(b.data);
	PyMem_Free(order);
	return out;
error:
	Py_DECREF(seq);
	Py_XDECREF(out);
	Py_XDECREF(empty);
	PyMem_Free(b.data);
	PyMem_Free(order);
	return NULL;
}

/*
 * ' users:(("name",pid=P,fd=F),...)' of holders h[0..n) into b (emptied first); by_task
 * (one slot a task, or NULL) keeps each task's name once looked up in names.
 */
static int users_text(Buf *b, const Holder *h, Py_ssize_t n, PyObject *tasks, PyObject *names, PyObject **by_task)
{
	b->len = 0;
	if (buf_add(b, " users:(", 8) < 0)
		return -1;
	for (Py_ssize_t k = 0; k < n; k++) {
		PyObject *name = by_task ? by_task[h[k].task] : NULL;
		if (name) {
			Py_INCREF(name);
		} else {
			name = cached(names, PyTuple_GET_ITEM(PyList_GET_ITEM(tasks, h[k].task), 1));
			if (!name)
				return -1;
			if (by_task) {
				Py_INCREF(name);
				by_task[h[k].task] = name;
			}
		}
		int r = holder_text(b, k == 0, name, h[k].pid, h[k].fd);
		Py_DECREF(name);
		if (r < 0)
			return -1;
	}
	return buf_add(b, ")", 1);
}

PyDoc_STRVAR(table_users_cells_doc,
"table_users_cells(table, owners, names) -> list[str]\n"
"\n"
"users_cells() of a SockTable's rows by their struct sock address, from owners a\n"
"HolderMap: the same cells.");

static PyObject *table_users_cells(PyObject *self, PyObject *args)
{
	SockTable *t;
	HolderMap *m;
	PyObject *names;
	if (!PyArg_ParseTuple(args, "O!O!O!", &SockTableType, &t, &HolderMapType, &m, &PyDict_Type, &names))
		return NULL;
	Py_ssize_t n = t->n;
	PyObject *out = PyList_New(n), *empty = PyUnicode_FromString("");
	Py_ssize_t *holder_of = out && empty ? holders_of_rows(m, t) : NULL;
	Buf b = {NULL, 0, 0};
	if (!holder_of)
		goto error;
	int extra = PyDict_GET_SIZE(m->extra) > 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		Py_ssize_t k = holder_of[i];
		PyObject *cell = NULL, *holders = NULL;
		if (k >= 0) {
			if (users_text(&b, m->h + m->first[k], m->first[k + 1] - m->first[k], m->tasks, names, NULL) < 0)
				goto error;
		} else if (extra) { /* a key set from Python (a subflow's): a list of Owner records */
			PyObject *key = PyLong_FromUnsignedLongLong(t->rows[i].addr);
			holders = key ? PyDict_GetItemWithError(m->extra, key) : NULL;
			Py_XDECREF(key);
			if (PyErr_Occurred() || (holders && PyList_Check(holders) && PyList_GET_SIZE(holders) &&
						 owners_text(&b, holders, names) < 0))
				goto error;
			if (holders && (!PyList_Check(holders) || !PyList_GET_SIZE(holders)))
				holders = NULL;
		}
		if (k >= 0 || holders) {
			if (!(cell = PyUnicode_DecodeUTF8(b.data, b.len, "strict")))
				goto error;
		} else {
			cell = empty;
			Py_INCREF(cell);
		}
		PyList_SET_ITEM(out, i, cell);
	}
	Py_DECREF(empty);
	PyMem_Free(holder_of);
	PyMem_Free(b.data);
	return out;
error:
	Py_XDECREF(out);
	Py_XDECREF(empty);
	PyMem_Free(holder_of);
	PyMem_Free(b.data);
	return NULL;
}

PyDoc_STRVAR(socket_cells_doc,
"socket_cells(socks, fields, hosts, services, queues, states, numeric, ephemeral)\n"
"    -> list[list[str]]\n"
"\n"
"ss's Netid, State, Recv-Q, Send-Q, Local Address:, Port, Peer Address: and Port cells\n"
"of each record, as drgn_ss.output.text.Formatter.columns makes them. fields: the records'\n"
"indices of proto, state, src, sport, dst, dport, v6only, recv_q and send_q. hosts[(addr,\n"
"v6only)], services[(port, proto)] and queues[size] are the cells (dicts that may make\n"
"missing ones); states[state] is a state's name. A port is '*' if 0, and its number if\n"
"numeric or inside ephemeral = (lo, hi); else services[(port, proto)].");

enum { F_PROTO, F_STATE, F_SRC, F_SPORT, F_DST, F_DPORT, F_V6ONLY, F_RECVQ, F_SENDQ, NFIELDS };
enum { C_PROTO, C_STATE, C_RECVQ, C_SENDQ, C_LOCAL, C_SPORT, C_PEER, C_DPORT, NCELLS };

typedef struct {
	PyObject *services, *star, **numbers; /* numbers[port]: its decimal text, made once */
	int numeric;
	long lo, hi;
} Ports;

static PyObject *port_cell(Ports *p, PyObject *port, PyObject *proto)
{
	long v = PyLong_AsLong(port);
	if (v == -1 && PyErr_Occurred())
		return NULL;
	if (v == 0) {
		Py_INCREF(p->star);
		return p->star;
	}
	if ((p->numeric || (p->lo <= v && v <= p->hi)) && v > 0 && v < 65536) {
		if (!p->numbers[v] && !(p->numbers[v] = PyObject_Str(port)))
			return NULL;
		Py_INCREF(p->numbers[v]);
		return p->numbers[v];
	}
	PyObject *key = PyTuple_Pack(2, port, proto);
	if (!key)
		return NULL;
	PyObject *cell = cached(p->services, key);
	Py_DECREF(key);
	return cell;
}

static PyObject *host_cell(PyObject *hosts, PyObject *addr, PyObject *v6only)
{
	PyObject *key = PyTuple_Pack(2, addr, v6only);
	if (!key)
		return NULL;
	PyObject *cell = cached(hosts, key);
	Py_DECREF(key);
	return cell;
}

static PyObject *socket_cells(PyObject *self, PyObject *args)
{
	PyObject *socks, *fields, *hosts, *queues, *states, *ephemeral;
	Ports ports = {NULL, NULL, NULL, 0, 0, 0};
	if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!pO!", &PyList_Type, &socks, &PyTuple_Type, &fields,
			      &PyDict_Type, &hosts, &PyDict_Type, &ports.services, &PyDict_Type, &queues,
			      &PyTuple_Type, &states, &ports.numeric, &PyTuple_Type, &ephemeral))
		return NULL;
	Py_ssize_t f[NFIELDS];
	if (PyTuple_GET_SIZE(fields) != NFIELDS || PyTuple_GET_SIZE(ephemeral) != 2) {
		PyErr_SetString(PyExc_ValueError, "socket_cells: 9 field indices and (lo, hi)");
		return NULL;
	}
	for (int i = 0; i < NFIELDS; i++)
		f[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(fields, i));
	ports.lo = PyLong_AsLong(PyTuple_GET_ITEM(ephemeral, 0));
	ports.hi = PyLong_AsLong(PyTuple_GET_ITEM(ephemeral, 1));
	if (PyErr_Occurred())
		return NULL;
	Py_ssize_t n = PyList_GET_SIZE(socks), nstates = PyTuple_GET_SIZE(states);
	PyObject *out = PyList_New(NCELLS);
	ports.star = PyUnicode_FromString("*");
	ports.numbers = PyMem_Calloc(65536, sizeof(PyObject *));
	if (!out || !ports.star || !ports.numbers) {
		if (!ports.numbers)
			PyErr_NoMemory();
		goto error;
	}
	for (int c = 0; c < NCELLS; c++) {
		PyObject *col = PyList_New(n);
		if (!col)
			goto error;
		PyList_SET_ITEM(out, c, col);
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *s = PyList_GET_ITEM(socks, i);
		if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) <= f[F_SENDQ] || PyTuple_GET_SIZE(s) <= f[F_V6ONLY]) {
			PyErr_SetString(PyExc_TypeError, "socket_cells: records are Socket tuples");
			goto error;
		}
		PyObject *cell[NCELLS];
		PyObject *proto = PyTuple_GET_ITEM(s, f[F_PROTO]);
		PyObject *v6only = PyTuple_GET_ITEM(s, f[F_V6ONLY]);
		long state = PyLong_AsLong(PyTuple_GET_ITEM(s, f[F_STATE]));
		if (state == -1 && PyErr_Occurred())
			goto error;
		Py_INCREF(proto);
		cell[C_PROTO] = proto;
		cell[C_STATE] = state >= 0 && state < nstates ? PyTuple_GET_ITEM(states, state)
							      : PyTuple_GET_ITEM(states, 0);
		Py_INCREF(cell[C_STATE]);
		cell[C_RECVQ] = cached(queues, PyTuple_GET_ITEM(s, f[F_RECVQ]));
		cell[C_SENDQ] = cached(queues, PyTuple_GET_ITEM(s, f[F_SENDQ]));
		cell[C_LOCAL] = host_cell(hosts, PyTuple_GET_ITEM(s, f[F_SRC]), v6only);
		cell[C_SPORT] = port_cell(&ports, PyTuple_GET_ITEM(s, f[F_SPORT]), proto);
		cell[C_PEER] = host_cell(hosts, PyTuple_GET_ITEM(s, f[F_DST]), v6only);
		cell[C_DPORT] = port_cell(&ports, PyTuple_GET_ITEM(s, f[F_DPORT]), proto);
		int failed = 0;
		for (int c = 0; c < NCELLS; c++) {
			if (cell[c])
				PyList_SET_ITEM(PyList_GET_ITEM(out, c), i, cell[c]);
			else
				failed = 1;
		}
		if (failed)
			goto error;
	}
	goto done;
error:
	Py_CLEAR(out);
done:
	if (ports.numbers) {
		for (int v = 0; v < 65536; v++)
			Py_XDECREF(ports.numbers[v]);
		PyMem_Free(ports.numbers);
	}
	Py_XDECREF(ports.star);
	return out;
}

/* -- cells of a SockTable's rows: socket_cells() without a record ---------------------- */

/* hosts[(address, v6only)] by the row's address bytes, family and v6only: open addressing. */
typedef struct {
	uint8_t key[18]; /* address (16), family, v6only + 1 (0: an empty slot) */
	PyObject *cell;
} HostSlot;

typedef struct {
	HostSlot *slots;
	size_t mask, used;
	PyObject *hosts;
} Hosts;

static uint64_t host_hash(const uint8_t *key)
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 18; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return h;
}

static void hosts_release(Hosts *h)
{
	for (size_t i = 0; h->slots && i <= h->mask; i++)
		Py_XDECREF(h->slots[i].cell);
	PyMem_Free(h->slots);
}

static int hosts_grow(Hosts *h)
{
	size_t cap = h->slots ? (h->mask + 1) * 2 : 256;
	HostSlot *old = h->slots, *slots = PyMem_Calloc(cap, sizeof(HostSlot));
	if (!slots) {
		PyErr_NoMemory();
		return -1;
	}
	for (size_t i = 0; old && i <= h->mask; i++) {
		if (!old[i].key[17])
			continue;
		size_t j = host_hash(old[i].key) & (cap - 1);
		while (slots[j].key[17])
			j = (j + 1) & (cap - 1);
		slots[j] = old[i];
	}
	PyMem_Free(old);
	h->slots = slots;
	h->mask = cap - 1;
	return 0;
}

/* The cell of an address (as hosts[(bytes, v6only)] makes it), a new reference. */
static PyObject *row_host_cell(Hosts *h, const uint8_t *addr, uint8_t family, uint8_t v6only)
{
	uint8_t key[18] = {0};
	int alen = family == 10 ? 16 : 4;
	memcpy(key, addr, alen);
	key[16] = family;
	key[17] = (uint8_t)(v6only + 1);
	if ((!h->slots || (h->used + 1) * 2 > h->mask + 1) && hosts_grow(h) < 0)
		return NULL;
	size_t j = host_hash(key) & h->mask;
	while (h->slots[j].key[17] && memcmp(h->slots[j].key, key, 18))
		j = (j + 1) & h->mask;
	if (!h->slots[j].key[17]) {
		PyObject *bytes = PyBytes_FromStringAndSize((const char *)addr, alen);
		PyObject *flag = v6only == ROW_V6ONLY_NONE ? Py_None : v6only == ROW_V6ONLY_TRUE ? Py_True : Py_False;
		PyObject *k = bytes ? PyTuple_Pack(2, bytes, flag) : NULL;
		PyObject *cell = k ? cached(h->hosts, k) : NULL;
		Py_XDECREF(bytes);
		Py_XDECREF(k);
		if (!cell)
			return NULL;
		memcpy(h->slots[j].key, key, 18);
		h->slots[j].cell = cell;
		h->used++;
	}
	Py_INCREF(h->slots[j].cell);
	return h->slots[j].cell;
}

/* services[(port, proto)] by proto index and port, made once each. */
static PyObject *row_port_cell(Ports *p, PyObject **services, uint16_t port, PyObject *proto)
{
	if (!port) {
		Py_INCREF(p->star);
		return p->star;
	}
	PyObject **slot = (p->numeric || (p->lo <= port && port <= p->hi)) ? &p->numbers[port] : &services[port];
	if (!*slot) {
		PyObject *v = PyLong_FromLong(port);
		*slot = !v ? NULL : slot == &p->numbers[port] ? PyObject_Str(v) : port_cell(p, v, proto);
		Py_XDECREF(v);
		if (!*slot)
			return NULL;
	}
	Py_INCREF(*slot);
	return *slot;
}

/* queues[size], made once for each size under 4096. */
static PyObject *row_queue_cell(PyObject *queues, PyObject **small, int64_t size)
{
	if (size >= 0 && size < 4096 && small[size]) {
		Py_INCREF(small[size]);
		return small[size];
	}
	PyObject *v = PyLong_FromLongLong(size);
	PyObject *cell = v ? cached(queues, v) : NULL;
	Py_XDECREF(v);
	if (cell && size >= 0 && size < 4096) {
		Py_INCREF(cell);
		small[size] = cell;
	}
	return cell;
}

/* The caches a row's Netid to Port cells come from: what table_cells() and RowLines share. */
typedef struct {
	Hosts hosts;
	Ports ports;
	PyObject *queues, *states;
	PyObject **services, **small; /* services[proto * 65536 + port]; small[size] of queues */
} RowCells;

/* Take references to the caches given (dicts; states a tuple): 0, or -1 and an error. */
static int row_cells_init(RowCells *rc, PyObject *hosts, PyObject *services, PyObject *queues, PyObject *states,
			  int numeric, PyObject *ephemeral)
{
	memset(rc, 0, sizeof(*rc));
	if (PyTuple_GET_SIZE(ephemeral) != 2 || PyTuple_GET_SIZE(states) < 1) {
		PyErr_SetString(PyExc_ValueError, "row cells: (lo, hi) and state names");
		return -1;
	}
	Py_INCREF(hosts);
	rc->hosts.hosts = hosts;
	Py_INCREF(services);
	rc->ports.services = services;
	Py_INCREF(queues);
	rc->queues = queues;
	Py_INCREF(states);
	rc->states = states;
	rc->ports.numeric = numeric;
	rc->ports.lo = PyLong_AsLong(PyTuple_GET_ITEM(ephemeral, 0));
	rc->ports.hi = PyLong_AsLong(PyTuple_GET_ITEM(ephemeral, 1));
	rc->ports.star = PyUnicode_FromString("*");
	rc->ports.numbers = PyMem_Calloc(65536, sizeof(PyObject *));
	rc->services = PyMem_Calloc((size_t)TABLE_PROTOS * 65536, sizeof(PyObject *));
	rc->small = PyMem_Calloc(4096, sizeof(PyObject *));
	if (PyErr_Occurred())
		return -1;
	if (!rc->ports.star || !rc->ports.numbers || !rc->services || !rc->small) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

static void row_cells_release(RowCells *rc)
{
	for (size_t k = 0; rc->services && k < (size_t)TABLE_PROTOS * 65536; k++)
		Py_XDECREF(rc->services[k]);
	for (int k = 0; rc->small && k < 4096; k++)
		Py_XDECREF(rc->small[k]);
	for (int v = 0; rc->ports.numbers && v < 65536; v++)
		Py_XDECREF(rc->ports.numbers[v]);
	PyMem_Free(rc->services);
	PyMem_Free(rc->small);
	PyMem_Free(rc->ports.numbers);
	hosts_release(&rc->hosts);
	Py_XDECREF(rc->hosts.hosts);
	Py_XDECREF(rc->ports.services);
	Py_XDECREF(rc->ports.star);
	Py_XDECREF(rc->queues);
	Py_XDECREF(rc->states);
}

/* Cell C_PROTO .. C_DPORT of row r of t, as socket_cells() makes it of the row's record (a new reference). */
static PyObject *row_cell(RowCells *rc, const SockTable *t, const TRow *r, int column)
{
	PyObject *proto = t->protos[r->proto], **svc = rc->services + (size_t)r->proto * 65536, *cell;
	switch (column) {
	case C_PROTO:
		cell = proto;
		break;
	case C_STATE:
		cell = PyTuple_GET_ITEM(rc->states, r->state < PyTuple_GET_SIZE(rc->states) ? r->state : 0);
		break;
	case C_RECVQ:
		return row_queue_cell(rc->queues, rc->small, r->recv_q);
	case C_SENDQ:
		return row_queue_cell(rc->queues, rc->small, r->send_q);
	case C_LOCAL:
		return row_host_cell(&rc->hosts, r->src, r->family, r->v6only);
	case C_SPORT:
		return row_port_cell(&rc->ports, svc, r->sport, proto);
	case C_PEER:
		return row_host_cell(&rc->hosts, r->dst, r->family, r->v6only);
	case C_DPORT:
		return row_port_cell(&rc->ports, svc, r->dport, proto);
	default:
		PyErr_SetString(PyExc_IndexError, "row cells: no such column");
		return NULL;
	}
	Py_INCREF(cell);
	return cell;
}

PyDoc_STRVAR(table_cells_doc,
"table_cells(table, hosts, services, queues, states, numeric, ephemeral) -> list[list[str]]\n"
"\n"
"socket_cells() of a SockTable's rows, without making their records: the same cells.");

static PyObject *table_cells(PyObject *self, PyObject *args)
{
	SockTable *t;
	PyObject *hosts, *services, *queues, *states, *ephemeral, *out = NULL;
	int numeric;
	RowCells rc;
	if (!PyArg_ParseTuple(args, "O!O!O!O!O!pO!", &SockTableType, &t, &PyDict_Type, &hosts, &PyDict_Type,
			      &services, &PyDict_Type, &queues, &PyTuple_Type, &states, &numeric, &PyTuple_Type,
			      &ephemeral))
		return NULL;
	if (row_cells_init(&rc, hosts, services, queues, states, numeric, ephemeral) < 0 ||
	    !(out = PyList_New(NCELLS)))
		goto done;
	for (int c = 0; c < NCELLS; c++) {
		PyObject *col = PyList_New(t->n);
		if (!col) {
			Py_CLEAR(out);
			goto done;
		}
		PyList_SET_ITEM(out, c, col);
	}
	for (Py_ssize_t i = 0; i < t->n; i++)
		for (int c = 0; c < NCELLS; c++) {
			PyObject *cell = row_cell(&rc, t, &t->rows[i], c);
			if (!cell) {
				Py_CLEAR(out);
				goto done;
			}
			PyList_SET_ITEM(PyList_GET_ITEM(out, c), i, cell);
		}
done:
	row_cells_release(&rc);
	return out;
}

/* str(v) of an int: an ASCII string made directly where v fits in 64 bits (an inode number). */
static PyObject *int_text(PyObject *v)
{
	unsigned long long n = PyLong_CheckExact(v) ? PyLong_AsUnsignedLongLong(v) : (unsigned long long)-1;
	if (n == (unsigned long long)-1) {
		PyErr_Clear(); /* negative, too big, or not an int: as str() does it */
		return PyObject_Str(v);
	}
	char digits[20];
	int len = 0;
	do {
		digits[sizeof(digits) - 1 - len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	PyObject *text = PyUnicode_New(len, 127);
	if (text)
		memcpy(PyUnicode_DATA(text), digits + sizeof(digits) - len, (size_t)len);
	return text;
}

PyDoc_STRVAR(unix_cells_doc,
"unix_cells(socks, names, name_text, queues, states) -> list[list[str]]\n"
"\n"
"The Netid to Port cells of unix sockets (Socket records with a UnixExtra), a column each:\n"
"netid, states[state], queues[recv_q], queues[send_q], 'NAME ' (names[extra.name], made\n"
"with name_text(name) + ' ' where names lacks it), str(inode), '* ', str(peer inode).\n"
"As drgn_ss.output.unix.unix_columns.");

static PyObject *unix_cells(PyObject *self, PyObject *args)
{
	PyObject *socks, *names, *name_text, *queues, *states;
	if (!PyArg_ParseTuple(args, "O!O!OOO!", &PyList_Type, &socks, &PyDict_Type, &names, &name_text, &queues,
			      &PyTuple_Type, &states))
		return NULL;
	Py_ssize_t n = PyList_GET_SIZE(socks);
	PyObject *cols[8] = {NULL};
	PyObject *star = PyUnicode_FromString("* ");
	for (int k = 0; k < 8; k++)
		if (!(cols[k] = PyList_New(n)))
			goto error;
	if (!star)
		goto error;
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *s = PyList_GET_ITEM(socks, i);
		if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) < SOCKET_FIELDS ||
		    !PyTuple_Check(PyTuple_GET_ITEM(s, 23)) || PyTuple_GET_SIZE(PyTuple_GET_ITEM(s, 23)) < 2) {
			PyErr_SetString(PyExc_TypeError, "unix_cells: not a unix socket record");
			goto error;
		}
		PyObject *cell[8];
		cell[0] = PyTuple_GET_ITEM(s, 0);
		Py_INCREF(cell[0]);
		Py_ssize_t state = PyLong_AsSsize_t(PyTuple_GET_ITEM(s, 2));
		if (state < 0 || state >= PyTuple_GET_SIZE(states)) {
			if (!PyErr_Occurred())
				PyErr_SetString(PyExc_ValueError, "unix_cells: a state out of range");
			Py_DECREF(cell[0]);
			goto error;
		}
		cell[1] = PyTuple_GET_ITEM(states, state);
		Py_INCREF(cell[1]);
		cell[2] = PyObject_GetItem(queues, PyTuple_GET_ITEM(s, 9));
		cell[3] = PyObject_GetItem(queues, PyTuple_GET_ITEM(s, 10));
		PyObject *name = PyTuple_GET_ITEM(PyTuple_GET_ITEM(s, 23), 1);
		cell[4] = PyDict_GetItemWithError(names, name); /* borrowed */
		if (cell[4]) {
			Py_INCREF(cell[4]);
		} else if (!PyErr_Occurred()) {
			PyObject *text = PyObject_CallOneArg(name_text, name);
			cell[4] = text ? PyUnicode_FromFormat("%U ", text) : NULL;
			Py_XDECREF(text);
			if (cell[4] && PyDict_SetItem(names, name, cell[4]) < 0)
				Py_CLEAR(cell[4]);
		}
		cell[5] = int_text(PyTuple_GET_ITEM(s, 4));
		cell[6] = star;
		Py_INCREF(star);
		cell[7] = int_text(PyTuple_GET_ITEM(s, 6));
		int bad = 0;
		for (int k = 0; k < 8; k++) {
			if (!cell[k])
				bad = 1;
			PyList_SET_ITEM(cols[k], i, cell[k] ? cell[k] : (Py_INCREF(Py_None), Py_None));
		}
		if (bad)
			goto error;
	}
	Py_DECREF(star);
	PyObject *out = PyList_New(8);
	if (!out)
		goto error_star_gone;
	for (int k = 0; k < 8; k++)
		PyList_SET_ITEM(out, k, cols[k]);
	return out;
error:
	Py_XDECREF(star);
error_star_gone:
	for (int k = 0; k < 8; k++)
		Py_XDECREF(cols[k]);
	return NULL;
}

/* -- ss's lines straight from a SockTable's rows: RowLines ---------------------------- */

/*
 * What drgn_ss.output.text.render_sockets() prints for a plain listing of rows (the cells
 * of table_cells() and table_users_cells(), laid out by drgn_ss.output.columns'
 * layout_columns() with no screen width), made without a Python object per cell: an
 * iterator of chunks of lines. Its cells are the same cached str objects (hosts, ports,
 * queues, states) and each row's users text, kept in an arena for the render batch; ss's
 * buffer accounting (render_breaks()) decides where a batch ends, as in Python.
 */
#define RL_COLS 10
#define RL_CHUNK_LINES 4096

typedef struct {
	Py_ssize_t off, n; /* a cell's bytes: at off in the batch's arena */
} RlCell;

typedef struct {
	PyObject_HEAD
	SockTable *t;
	HolderMap *owners; /* NULL: no Process cells */
	PyObject *names, *header[RL_COLS], *empty;
	RowCells rc;
	int enabled[RL_COLS], ncols;
	Py_ssize_t *holder_of; /* each row's index in owners->keys, or -1 */
	PyObject **by_task;    /* each task's name, once looked up */
	Py_ssize_t ntasks;
	Py_ssize_t next_row, nrows; /* rows are the header (if any) and the table's */
	int has_header;
	Tokens tok;
	Py_ssize_t max_len[RL_COLS];
	RlCell *cells; /* the batch: ncols a row */
	Py_ssize_t batch_rows, batch_cap, printed;
	Buf arena, line;
	Py_ssize_t pads[RL_COLS];
	int ready; /* the batch is measured and being printed */
} RowLines;

static const char *const rl_delim[RL_COLS] = {"", " ", " ", " ", " ", "", " ", "", "", ""};
static const Py_ssize_t rl_delim_len[RL_COLS] = {0, 1, 1, 1, 1, 0, 1, 0, 0, 0};
static const int rl_right[RL_COLS] = {0, 0, 0, 0, 1, 0, 1, 0, 0, 0};

static void rl_dealloc(RowLines *r)
{
	Py_XDECREF(r->t);
	Py_XDECREF(r->owners);
	Py_XDECREF(r->names);
	Py_XDECREF(r->empty);
	for (int c = 0; c < RL_COLS; c++)
		Py_XDECREF(r->header[c]);
	row_cells_release(&r->rc);
	PyMem_Free(r->holder_of);
	for (Py_ssize_t k = 0; r->by_task && k < r->ntasks; k++)
		Py_XDECREF(r->by_task[k]);
	PyMem_Free(r->by_task);
	PyMem_Free(r->cells);
	PyMem_Free(r->arena.data);
	PyMem_Free(r->line.data);
	Py_TYPE(r)->tp_free((PyObject *)r);
}

/* A cell from a str: its UTF-8 bytes copied into the batch's arena (ss counts bytes). 0 or -1. */
static int rl_str(Buf *arena, RlCell *cell, PyObject *s)
{
	if (!s)
		return -1;
	if (!PyUnicode_Check(s)) {
		PyErr_SetString(PyExc_TypeError, "RowLines: cells are str");
		return -1;
	}
	Py_ssize_t n;
	const char *text = PyUnicode_IS_ASCII(s) ? (const char *)PyUnicode_1BYTE_DATA(s) : PyUnicode_AsUTF8AndSize(s, &n);
	if (!text)
		return -1;
	if (PyUnicode_IS_ASCII(s))
		n = PyUnicode_GET_LENGTH(s);
	*cell = (RlCell){arena->len, n};
	return buf_add(arena, text, n);
}

/* The cells of row k (0: the header, if any) at the batch's end: 0 or -1 (an error). */
static int rl_row(RowLines *r, Py_ssize_t k)
{
	if (r->batch_rows == r->batch_cap) {
		Py_ssize_t cap = r->batch_cap ? 2 * r->batch_cap : 4096;
		RlCell *more = PyMem_Realloc(r->cells, (size_t)cap * r->ncols * sizeof(RlCell));
		if (!more) {
			PyErr_NoMemory();
			return -1;
		}
		r->cells = more;
		r->batch_cap = cap;
	}
	RlCell *row = r->cells + r->batch_rows * r->ncols;
	if (r->has_header && k == 0) {
		for (int c = 0; c < r->ncols; c++) {
			if (rl_str(&r->arena, &row[c], r->header[r->enabled[c]]) < 0)
				return -1;
		}
		r->batch_rows++;
		return 0;
	}
	Py_ssize_t i = k - r->has_header;
	const TRow *w = &r->t->rows[i];
	for (int c = 0; c < r->ncols; c++) {
		PyObject *cell; /* a new reference, released at once: its bytes are copied */
		if (r->enabled[c] < NCELLS) {
			cell = row_cell(&r->rc, r->t, w, r->enabled[c]);
		} else if (r->enabled[c] == 8 && r->owners && r->holder_of[i] >= 0) {
			Py_ssize_t h = r->holder_of[i];
			HolderMap *m = r->owners;
			if (users_text(&r->line, m->h + m->first[h], m->first[h + 1] - m->first[h], m->tasks,
				       r->names, r->by_task) < 0)
				return -1;
			row[c] = (RlCell){r->arena.len, r->line.len};
			if (buf_add(&r->arena, r->line.data, r->line.len) < 0)
				return -1;
			continue;
		} else { /* no holders; the column after Process */
			cell = r->empty;
			Py_INCREF(cell);
		}
		int rr = rl_str(&r->arena, &row[c], cell);
		Py_XDECREF(cell);
		if (rr < 0)
			return -1;
	}
	r->batch_rows++;
	return 0;
}

static inline const char *rl_text(const RowLines *r, const RlCell *cell)
{
	return r->arena.data + cell->off;
}

/* The batch's widths, measured over its first `measured` rows (and the last's cells but Process). */
static void rl_measure(RowLines *r, Py_ssize_t measured)
{
	for (Py_ssize_t k = 0; k < measured; k++)
		for (int c = 0; c < r->ncols; c++)
			if (r->cells[k * r->ncols + c].n > r->max_len[c])
				r->max_len[c] = r->cells[k * r->ncols + c].n;
	if (measured < r->batch_rows)
		for (int c = 0; c < r->ncols; c++) {
			Py_ssize_t n = r->cells[(r->batch_rows - 1) * r->ncols + c].n;
			if (r->enabled[c] != 8 && n > r->max_len[c])
				r->max_len[c] = n;
		}
	/* render_calc_width() without a screen width, then each cell's pad after its delimiter */
	int first = 1;
	for (int c = 0; c < r->ncols; c++) {
		Py_ssize_t delim = rl_delim_len[r->enabled[c]];
		Py_ssize_t w = !first && r->max_len[c] ? r->max_len[c] + delim : r->max_len[c];
		if (w)
			first = 0;
		Py_ssize_t shown = c ? delim : 0; /* the first column is printed without its delimiter */
		r->pads[c] = w - shown > 0 ? w - shown : 0;
	}
	r->ready = 1;
	r->printed = 0;
}

static PyObject *rl_next(RowLines *r)
{
	for (;;) {
		if (r->ready) {
			if (r->printed == r->batch_rows) { /* printed: the next batch */
				r->ready = 0;
				r->batch_rows = 0;
				r->arena.len = 0;
				continue;
			}
			Py_ssize_t stop = r->printed + RL_CHUNK_LINES < r->batch_rows ? r->printed + RL_CHUNK_LINES
										 : r->batch_rows;
			r->line.len = 0;
			for (Py_ssize_t k = r->printed; k < stop; k++) {
				for (int c = 0; c < r->ncols; c++) {
					const RlCell *cell = &r->cells[k * r->ncols + c];
					const char *d = rl_delim[r->enabled[c]];
					Py_ssize_t dl = c ? rl_delim_len[r->enabled[c]] : 0;
					Py_ssize_t fill = r->pads[c] > cell->n ? r->pads[c] - cell->n : 0;
					if (buf_reserve(&r->line, dl + fill + cell->n + 1) < 0)
						return NULL;
					char *p = r->line.data + r->line.len;
					memcpy(p, d, dl);
					p += dl;
					if (rl_right[r->enabled[c]]) {
						memset(p, ' ', fill);
						p += fill;
					}
					memcpy(p, rl_text(r, cell), cell->n);
					p += cell->n;
					if (!rl_right[r->enabled[c]]) {
						memset(p, ' ', fill);
						p += fill;
					}
					r->line.len = p - r->line.data;
				}
				r->line.data[r->line.len++] = '\n';
			}
			r->printed = stop;
			return PyUnicode_DecodeUTF8(r->line.data, r->line.len, "surrogateescape");
		}
		if (r->next_row == r->nrows) {
			if (!r->batch_rows)
				return NULL; /* the end */
			/* ss renders the rest at the end, the last line's Process cell still open */
			Py_ssize_t measured = r->has_header && r->nrows == 1 ? r->batch_rows : r->batch_rows - 1;
			rl_measure(r, measured);
			continue;
		}
		if (rl_row(r, r->next_row) < 0)
			return NULL;
		r->next_row++;
		const RlCell *row = r->cells + (r->batch_rows - 1) * r->ncols;
		Py_ssize_t n = 0;
		for (int c = 0; c < r->ncols; c++) { /* render_breaks()'s accounting */
			n = row[c].n;
			tokens_write(&r->tok, n);
			if (c < r->ncols - 1)
				tokens_flush(&r->tok, n);
		}
		if (r->tok.chunks >= BUF_CHUNKS_MAX) {
			r->tok.chunks = r->tok.used = 0;
			rl_measure(r, r->batch_rows);
		} else {
			tokens_flush(&r->tok, n);
		}
	}
}

static PyTypeObject RowLinesType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "drgn_ss._fast.RowLines",
	.tp_basicsize = sizeof(RowLines),
	.tp_dealloc = (destructor)rl_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)rl_next,
};

PyDoc_STRVAR(row_lines_doc,
"row_lines(table, owners, names, hosts, services, queues, states, numeric, ephemeral, enabled,\n"
"          header) -> an iterator of str\n"
"\n"
"The lines drgn_ss.output.text.render_sockets() prints for a SockTable's rows without a\n"
"screen width, in chunks: the Netid to Port cells as table_cells() makes them, the Process\n"
"cells as table_users_cells() does from owners (a HolderMap; None: none), laid out as\n"
"drgn_ss.output.columns.layout_columns() does (widths and pads in bytes, as ss counts).\n"
"enabled: the columns shown (indices of COLUMNS, in order); header: the ten header cells,\n"
"or None. None instead of an iterator where owners holds keys set from Python (MPTCP\n"
"subflows'): table_users_cells() makes those cells.");

static PyObject *row_lines(PyObject *self, PyObject *args)
{
	SockTable *t;
	PyObject *owners, *names, *hosts, *services, *queues, *states, *ephemeral, *enabled, *header;
	int numeric;
	if (!PyArg_ParseTuple(args, "O!OO!O!O!O!O!pO!O!O", &SockTableType, &t, &owners, &PyDict_Type, &names,
			      &PyDict_Type, &hosts, &PyDict_Type, &services, &PyDict_Type, &queues, &PyTuple_Type,
			      &states, &numeric, &PyTuple_Type, &ephemeral, &PyList_Type, &enabled, &header))
		return NULL;
	if ((owners != Py_None && !HolderMap_Check(owners)) || PyList_GET_SIZE(enabled) < 1 ||
	    PyList_GET_SIZE(enabled) > RL_COLS ||
	    (header != Py_None && (!PyList_Check(header) || PyList_GET_SIZE(header) != RL_COLS))) {
		PyErr_SetString(PyExc_TypeError, "row_lines: bad arguments");
		return NULL;
	}
	if (owners != Py_None && PyDict_GET_SIZE(((HolderMap *)owners)->extra))
		Py_RETURN_NONE;
	if (PyType_Ready(&RowLinesType) < 0)
		return NULL;
	RowLines *r = (RowLines *)RowLinesType.tp_alloc(&RowLinesType, 0);
	if (!r)
		return NULL;
	Py_INCREF(t);
	r->t = t;
	if (owners != Py_None) {
		Py_INCREF(owners);
		r->owners = (HolderMap *)owners;
	}
	Py_INCREF(names);
	r->names = names;
	if (row_cells_init(&r->rc, hosts, services, queues, states, numeric, ephemeral) < 0) {
		Py_DECREF(r);
		return NULL;
	}
	r->ncols = (int)PyList_GET_SIZE(enabled);
	for (int c = 0; c < r->ncols; c++) {
		long v = PyLong_AsLong(PyList_GET_ITEM(enabled, c));
		if (v < 0 || v >= RL_COLS || (c && v <= r->enabled[c - 1])) {
			if (!PyErr_Occurred())
				PyErr_SetString(PyExc_ValueError, "row_lines: enabled columns in order");
			Py_DECREF(r);
			return NULL;
		}
		r->enabled[c] = (int)v;
	}
	if (header != Py_None) {
		r->has_header = 1;
		for (int c = 0; c < RL_COLS; c++) {
			r->header[c] = PyList_GET_ITEM(header, c);
			Py_INCREF(r->header[c]);
		}
	}
	r->nrows = t->n + r->has_header;
	r->empty = PyUnicode_FromString("");
	if (r->owners) {
		r->ntasks = PyList_GET_SIZE(r->owners->tasks);
		r->by_task = PyMem_Calloc(r->ntasks ? r->ntasks : 1, sizeof(PyObject *));
		if (!r->by_task || !(r->holder_of = holders_of_rows(r->owners, t))) {
			if (!PyErr_Occurred())
				PyErr_NoMemory();
			Py_DECREF(r);
			return NULL;
		}
	}
	if (PyErr_Occurred() || !r->empty) {
		if (!PyErr_Occurred())
			PyErr_NoMemory();
		Py_DECREF(r);
		return NULL;
	}
	return (PyObject *)r;
}

PyMethodDef fast_render_methods[] = {
	{"render_breaks", render_breaks, METH_VARARGS, render_breaks_doc},
	{"max_lengths", max_lengths, METH_VARARGS, max_lengths_doc},
	{"format_lines", format_lines, METH_VARARGS, format_lines_doc},
	{"users_cells", users_cells, METH_VARARGS, users_cells_doc},
	{"socket_cells", socket_cells, METH_VARARGS, socket_cells_doc},
	{"table_cells", table_cells, METH_VARARGS, table_cells_doc},
	{"table_users_cells", table_users_cells, METH_VARARGS, table_users_cells_doc},
	{"row_lines", row_lines, METH_VARARGS, row_lines_doc},
	{"unix_cells", unix_cells, METH_VARARGS, unix_cells_doc},
	{NULL, NULL, 0, NULL},
};
