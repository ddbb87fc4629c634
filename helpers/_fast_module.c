/*
 * drgn_ss._fast: the module, and the helpers its domains share (declared in _fast.h).
 *
 * drgn_ss._fast runs drgn_ss's hot loops in C, one file a domain, each mirroring a Python
 * module that stays the reference (the tests compare both):
 *   _fast_walk.c    hash-chain walk and socket decoding   drgn_ss.sockets.inet, drgn_ss.tables.hashtable
 *   _fast_owners.c  every task's file table: owners       drgn_ss.owners
 *   _fast_render.c  ss's cells, buffer accounting, lines  drgn_ss.output.text
 *   _fast_btf.c     BTF type index, kallsyms names        drgn_ss.kernel.btf, drgn_ss.kernel.kallsyms
 *   _fast_aset.c    a set of node addresses                drgn_ss.tables.hashtable.Walked
 *   _fast_table.c   inet sockets as compact rows           drgn_ss.sockets.record.Socket
 * Offsets come from Python (the facts), so nothing here knows a kernel version.
 *
 * Here: reading kernel memory, from an image of physical memory where the direct map
 * allows (a memcpy from the mapped ELF core file, or a pread() of a QEMU process's memory),
 * and otherwise through a Python callable, read(address, size) -> bytes, which may raise
 * drgn.FaultError (reference: drgn_ss.kernel.memory.Memory and PhysicalImage); struct members at
 * offsets (drgn_ss.kernel.fields.Field); records.
 */
#include "_fast.h"

void mem_release(Mem *m)
{
	if (m->have_view)
		PyBuffer_Release(&m->view);
	PyMem_Free(m->starts);
	PyMem_Free(m->ends);
	PyMem_Free(m->offsets);
}

/* Where the image holds size bytes at direct-map address addr: 1 and *off, or 0. */
static int mem_locate(const Mem *m, uint64_t addr, size_t size, uint64_t *off)
{
	if ((!m->have_view && m->fd < 0) || addr < m->lo || addr >= m->hi)
		return 0;
	uint64_t phys = addr - m->lo;
	Py_ssize_t lo = 0, hi = m->nseg;
	while (lo < hi) { /* the last segment starting at or before phys */
		Py_ssize_t mid = (lo + hi) / 2;
		if (m->starts[mid] <= phys)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || phys + size > m->ends[lo - 1])
		return 0;
	*off = m->offsets[lo - 1] + (phys - m->starts[lo - 1]);
	return !m->have_view || *off + size <= (uint64_t)m->view.len;
}

void mem_prefetch(const Mem *m, uint64_t addr, size_t size)
{
	uint64_t off;
	if (m->have_view && mem_locate(m, addr, size, &off))
		for (size_t i = 0; i < size; i += 64)
			__builtin_prefetch((const char *)m->view.buf + off + i);
}

const unsigned char *mem_ptr(const Mem *m, uint64_t addr, size_t size)
{
	uint64_t off;
	if (!m->have_view || !mem_locate(m, addr, size, &off))
		return NULL;
	return (const unsigned char *)m->view.buf + off;
}

int mem_read_spans(Mem *m, uint64_t addr, size_t size, const Span *spans, int nspans, unsigned char *out,
		   Faults *faults)
{
	uint64_t off;
	if (nspans && m->have_view && mem_locate(m, addr, size, &off)) {
		const unsigned char *base = (const unsigned char *)m->view.buf + off;
		for (int i = 0; i < nspans; i++)
			memcpy(out + spans[i].off, base + spans[i].off, spans[i].len);
		return 0;
	}
	return mem_read(m, addr, size, out, faults);
}

static int span_cmp(const void *a, const void *b)
{
	const Span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int make_spans(const Py_ssize_t *starts, const Py_ssize_t *lens, int n, Py_ssize_t size, Span *out)
{
	Span all[4 * MAX_SPANS];
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (lens[i] <= 0 || starts[i] < 0 || starts[i] >= size)
			continue;
		if (k == 4 * MAX_SPANS)
			return 0;
		Py_ssize_t lo = starts[i] & ~(Py_ssize_t)63, hi = (starts[i] + lens[i] + 63) & ~(Py_ssize_t)63;
		if (hi > size)
			hi = size;
		all[k].off = (uint32_t)lo;
		all[k++].len = (uint32_t)(hi - lo);
	}
	qsort(all, k, sizeof(Span), span_cmp);
	int m = 0;
	for (int i = 0; i < k; i++) {
		if (m && all[i].off <= out[m - 1].off + out[m - 1].len) {
			uint32_t end = all[i].off + all[i].len;
			if (end > out[m - 1].off + out[m - 1].len)
				out[m - 1].len = end - out[m - 1].off;
			continue;
		}
		if (m == MAX_SPANS)
			return 0;
		out[m++] = all[i];
	}
	return m;
}

int mem_read(Mem *m, uint64_t addr, size_t size, unsigned char *out, Faults *faults)
{
	uint64_t off;
	if (mem_locate(m, addr, size, &off)) {
		if (m->have_view) {
			memcpy(out, (const unsigned char *)m->view.buf + off, size);
			return 0;
		}
		if (pread(m->fd, out, size, (off_t)off) == (ssize_t)size)
			return 0;
		/* else drgn says what is wrong */
	}
	PyObject *data = PyObject_CallFunction(m->read, "Kn", (unsigned long long)addr, (Py_ssize_t)size);
	if (!data) {
		if (!PyErr_ExceptionMatches(m->fault))
			return -1;
		if (faults && !faults->first) {
			PyObject *type, *value, *tb;
			PyErr_Fetch(&type, &value, &tb);
			PyErr_NormalizeException(&type, &value, &tb);
			faults->first = value;
			Py_XDECREF(type);
			Py_XDECREF(tb);
		} else {
			PyErr_Clear();
		}
		return 1;
	}
	char *buf;
	Py_ssize_t len;
	if (PyBytes_AsStringAndSize(data, &buf, &len) < 0) {
		Py_DECREF(data);
		return -1;
	}
	if ((size_t)len != size) {
		Py_DECREF(data);
		PyErr_Format(PyExc_ValueError, "read(%llx, %zu) returned %zd bytes",
			     (unsigned long long)addr, size, len);
		return -1;
	}
	memcpy(out, buf, size);
	Py_DECREF(data);
	return 0;
}

int parse_field(PyObject *spec, const char *name, Field *f)
{
	PyObject *t = PyDict_GetItemString(spec, name); /* borrowed */
	if (!t || t == Py_None) {
		memset(f, 0, sizeof(*f));
		return 0;
	}
	if (!PyArg_ParseTuple(t, "niiii", &f->offset, &f->size, &f->sign, &f->shift, &f->bits))
		return -1;
	if (f->offset < 0 || f->size < 1 || f->size > 8 || f->offset + f->size > MAX_READ) {
		PyErr_Format(PyExc_ValueError, "bad field %s", name);
		return -1;
	}
	return 0;
}

Py_ssize_t spec_int(PyObject *spec, const char *name, int *ok)
{
	PyObject *v = PyDict_GetItemString(spec, name);
	if (!v) {
		PyErr_Format(PyExc_KeyError, "%s", name);
		*ok = 0;
		return 0;
	}
	Py_ssize_t n = PyLong_AsSsize_t(v);
	if (n == -1 && PyErr_Occurred())
		*ok = 0;
	return n;
}

int is_record_type(PyObject *cls)
{
	return PyType_Check(cls) && PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type);
}

PyObject *new_record(PyTypeObject *cls, PyObject **items, Py_ssize_t n)
{
	PyObject *rec = NULL;
	Py_ssize_t i;
	for (i = 0; i < n && items[i]; i++)
		;
	if (i == n && (rec = cls->tp_alloc(cls, n))) {
		for (i = 0; i < n; i++) {
			PyTuple_SET_ITEM(rec, i, items[i]);
			items[i] = NULL;
		}
	}
	for (i = 0; i < n; i++)
		Py_CLEAR(items[i]);
	return rec;
}

int parse_mem(PyObject *spec, Mem *m)
{
	/* spec: (mapping or None, fd or -1, starts, ends, offsets, lo, hi, read, FaultError) */
	PyObject *map, *starts, *ends, *offsets;
	unsigned long long lo, hi;
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	if (!PyArg_ParseTuple(spec, "OiOOOKKOO", &map, &m->fd, &starts, &ends, &offsets, &lo, &hi,
			      &m->read, &m->fault))
		return -1;
	m->lo = lo;
	m->hi = hi;
	if (map == Py_None && m->fd < 0)
		return 0;
	PyObject *seqs[3] = {starts, ends, offsets};
	uint64_t **arrays[3] = {&m->starts, &m->ends, &m->offsets};
	Py_ssize_t n = PyList_Check(starts) ? PyList_GET_SIZE(starts) : -1;
	for (int k = 0; k < 3; k++) {
		if (!PyList_Check(seqs[k]) || PyList_GET_SIZE(seqs[k]) != n) {
			PyErr_SetString(PyExc_TypeError, "segments: three lists of one length");
			return -1;
		}
		*arrays[k] = PyMem_Malloc((n ? n : 1) * sizeof(uint64_t));
		if (!*arrays[k]) {
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			(*arrays[k])[i] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(seqs[k], i));
			if (PyErr_Occurred())
				return -1;
		}
	}
	m->nseg = n;
	if (map == Py_None)
		return 0;
	if (PyObject_GetBuffer(map, &m->view, PyBUF_SIMPLE) < 0)
		return -1;
	m->have_view = 1;
	return 0;
}

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "drgn_ss._fast",
	"drgn_ss's hot loops in C: the hash-chain walk and socket decoding, owners, rendering,\n"
	"BTF and kallsyms; drgn_ss.sockets.inet, owners, render, btf and kallsyms are the reference.",
	-1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void)
{
	PyObject *m = PyModule_Create(&module);
	if (m && (PyModule_AddFunctions(m, fast_walk_methods) < 0 ||
		  PyModule_AddFunctions(m, fast_owners_methods) < 0 ||
		  PyModule_AddFunctions(m, fast_render_methods) < 0 ||
		  PyModule_AddFunctions(m, fast_btf_methods) < 0 || PyType_Ready(&AddressSetType) < 0 ||
		  PyModule_AddObjectRef(m, "AddressSet", (PyObject *)&AddressSetType) < 0 ||
		  PyType_Ready(&SockTableType) < 0 || PyType_Ready(&HolderMapType) < 0 ||
		  PyModule_AddObjectRef(m, "HolderMap", (PyObject *)&HolderMapType) < 0 ||
		  PyModule_AddObjectRef(m, "SockTable", (PyObject *)&SockTableType) < 0))
		Py_CLEAR(m);
	return m;
}
