/*
 * drgn_ss._fast, the kernel's own tables: the BTF type index, btf_index(), and the
 * compressed kallsyms names, kallsyms_find().
 * Reference: drgn_ss.kernel.btf (Btf's type index) and drgn_ss.kernel.kallsyms (find_names).
 */
#include "_fast.h"

PyDoc_STRVAR(btf_index_doc,
"btf_index(data, start, end) -> (offsets, named)\n"
"\n"
"One pass over a BTF type section, data[start:end], as drgn_ss.kernel.btf.Btf does in Python:\n"
"offsets[id] is where type id's struct btf_type starts (offsets[0] = 0 for void), and\n"
"named maps (kind, name offset) of named structs, unions, typedefs, ints and enums to the\n"
"first such id. ValueError if a type runs past the end.");

static PyObject *btf_index(PyObject *self, PyObject *args)
{
	Py_buffer view;
	Py_ssize_t start, end;
	if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &end))
		return NULL;
	PyObject *offsets = NULL, *named = NULL, *result = NULL;
	if (start < 0 || end < start || end > view.len) {
		PyErr_SetString(PyExc_ValueError, "btf_index: section out of range");
		goto out;
	}
	offsets = PyList_New(0);
	named = PyDict_New();
	if (!offsets || !named)
		goto out;
	PyObject *zero = PyLong_FromLong(0);
	if (!zero || PyList_Append(offsets, zero) < 0) {
		Py_XDECREF(zero);
		goto out;
	}
	Py_DECREF(zero);
	const unsigned char *data = view.buf;
	Py_ssize_t pos = start;
	while (pos < end) {
		if (pos + 12 > end) {
			PyErr_SetString(PyExc_ValueError, "BTF type section ends inside a type");
			goto out;
		}
		uint32_t name_off, info;
		memcpy(&name_off, data + pos, 4);
		memcpy(&info, data + pos + 4, 4);
		unsigned kind = info >> 24 & 0x1f, vlen = info & 0xffff;
		PyObject *at = PyLong_FromSsize_t(pos);
		int rr = at ? PyList_Append(offsets, at) : -1;
		Py_XDECREF(at);
		if (rr < 0)
			goto out;
		/* include/uapi/linux/btf.h: INT 1, STRUCT 4, UNION 5, ENUM 6, TYPEDEF 8, ENUM64 19 */
		if (name_off && (kind == 1 || kind == 4 || kind == 5 || kind == 6 || kind == 8 || kind == 19)) {
			PyObject *key = Py_BuildValue("(kk)", (unsigned long)kind, (unsigned long)name_off);
			if (!key)
				goto out;
			int has = PyDict_Contains(named, key);
			PyObject *id = has == 0 ? PyLong_FromSsize_t(PyList_GET_SIZE(offsets) - 1) : NULL;
			rr = has < 0 ? -1 : has ? 0 : id ? PyDict_SetItem(named, key, id) : -1;
			Py_XDECREF(id);
			Py_DECREF(key);
			if (rr < 0)
				goto out;
		}
		Py_ssize_t fixed = 0, item = 0;
		switch (kind) {
		case 1: case 14: case 17: fixed = 4; break;   /* INT, VAR, DECL_TAG */
		case 3: fixed = 12; break;                    /* ARRAY */
		case 4: case 5: case 15: case 19: item = 12; break; /* STRUCT, UNION, DATASEC, ENUM64 */
		case 6: case 13: item = 8; break;             /* ENUM, FUNC_PROTO */
		}
		pos += 12 + fixed + item * vlen;
	}
	if (pos != end) {
		PyErr_SetString(PyExc_ValueError, "BTF type section ends inside a type");
		goto out;
	}
	result = PyTuple_Pack(2, offsets, named);
out:
	Py_XDECREF(offsets);
	Py_XDECREF(named);
	PyBuffer_Release(&view);
	return result;
}

PyDoc_STRVAR(kallsyms_find_doc,
"kallsyms_find(names, count, token_table, token_index, long_names, wanted) -> list\n"
"\n"
"One pass over the kernel's compressed kallsyms_names (count symbols), as\n"
"drgn_ss.kernel.kallsyms.find_names does in Python: for each name in wanted (bytes), the\n"
"(index, type letter) of the first symbol of that name, or None. token_index is the\n"
"kernel's 256 little-endian u16 offsets into token_table. long_names: a length byte\n"
"with its top bit set takes a second byte (Linux 6.1+). ValueError if a table is cut short.");

#define KALLSYMS_MAX_WANTED 64

static PyObject *kallsyms_find(PyObject *self, PyObject *args)
{
	Py_buffer names, table, index;
	Py_ssize_t count;
	int long_names;
	PyObject *wanted;
	if (!PyArg_ParseTuple(args, "y*ny*y*pO!", &names, &count, &table, &index, &long_names,
			      &PyTuple_Type, &wanted))
		return NULL;
	PyObject *result = NULL;
	Py_ssize_t nwanted = PyTuple_GET_SIZE(wanted), left = nwanted;
	const char *want[KALLSYMS_MAX_WANTED];
	Py_ssize_t want_len[KALLSYMS_MAX_WANTED];
	Py_ssize_t found[KALLSYMS_MAX_WANTED];
	char kind[KALLSYMS_MAX_WANTED];
	const unsigned char *n = names.buf, *tt = table.buf;
	Py_ssize_t pos = 0;
	uint16_t offsets[256];
	if (nwanted > KALLSYMS_MAX_WANTED || index.len < 512 || table.len < 1) {
		PyErr_SetString(PyExc_ValueError, "kallsyms_find: bad arguments");
		goto out;
	}
	memcpy(offsets, index.buf, sizeof(offsets));
	for (int i = 0; i < 256; i++) {
		if (offsets[i] >= table.len) {
			PyErr_SetString(PyExc_ValueError, "kallsyms token index past the token table");
			goto out;
		}
	}
	if (((const char *)table.buf)[table.len - 1] != 0) {
		PyErr_SetString(PyExc_ValueError, "kallsyms token table not terminated");
		goto out;
	}
	for (Py_ssize_t w = 0; w < nwanted; w++) {
		PyObject *item = PyTuple_GET_ITEM(wanted, w);
		if (!PyBytes_Check(item)) {
			PyErr_SetString(PyExc_TypeError, "kallsyms_find: wanted names are bytes");
			goto out;
		}
		want[w] = PyBytes_AS_STRING(item);
		want_len[w] = PyBytes_GET_SIZE(item);
		found[w] = -1;
	}
	char name[1024];
	for (Py_ssize_t i = 0; i < count && left > 0; i++) {
		if (pos >= names.len)
			goto short_names;
		Py_ssize_t len = n[pos++];
		if ((len & 0x80) && long_names) {
			if (pos >= names.len)
				goto short_names;
			len = (len & 0x7f) | (Py_ssize_t)n[pos++] << 7;
		}
		if (pos + len > names.len)
			goto short_names;
		/* Expand the tokens; the first character is the symbol's type letter. */
		Py_ssize_t out_len = 0;
		int fits = 1;
		for (Py_ssize_t t = 0; t < len && fits; t++) {
			const unsigned char *tok = tt + offsets[n[pos + t]];
			while (*tok) {
				if (out_len == (Py_ssize_t)sizeof(name)) {
					fits = 0;
					break;
				}
				name[out_len++] = (char)*tok++;
			}
		}
		pos += len;
		if (!fits || out_len < 1)
			continue;
		for (Py_ssize_t w = 0; w < nwanted; w++) {
			if (found[w] < 0 && want_len[w] == out_len - 1 &&
			    memcmp(want[w], name + 1, out_len - 1) == 0) {
				found[w] = i;
				kind[w] = name[0];
				left--;
			}
		}
	}
	result = PyList_New(nwanted);
	if (!result)
		goto out;
	for (Py_ssize_t w = 0; w < nwanted; w++) {
		PyObject *v = found[w] < 0 ? Py_NewRef(Py_None)
				: Py_BuildValue("(nC)", found[w], (int)(unsigned char)kind[w]);
		if (!v) {
			Py_CLEAR(result);
			goto out;
		}
		PyList_SET_ITEM(result, w, v);
	}
	goto out;
short_names:
	PyErr_SetString(PyExc_ValueError, "kallsyms_names ends inside a symbol");
out:
	PyBuffer_Release(&names);
	PyBuffer_Release(&table);
	PyBuffer_Release(&index);
	return result;
}

PyMethodDef fast_btf_methods[] = {
	{"btf_index", btf_index, METH_VARARGS, btf_index_doc},
	{"kallsyms_find", kallsyms_find, METH_VARARGS, kallsyms_find_doc},
	{NULL, NULL, 0, NULL},
};
