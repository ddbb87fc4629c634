/*
 * drgn_ss._fast.AddressSet: a set of kernel addresses (nonzero 64-bit ints), the nodes a
 * listing's walks have visited (drgn_ss.tables.hashtable.Walked.nodes). What a Python set
 * of ints does for the walks (in, add, discard, difference_update, len), kept as a table
 * of uint64_t: at 100,000 sockets a Python set takes 100,000 int objects and a 4 MB table
 * whose lookups miss the cache; the walks in C use it without making an int per node.
 */
#include "_fast.h"

static size_t aset_slot(const AddressSet *s, uint64_t key)
{
	return addr_slot(s->keys, s->mask, key);
}

int aset_contains(const AddressSet *s, uint64_t key)
{
	return key && s->keys && s->keys[aset_slot(s, key)] == key;
}

static int aset_resize(AddressSet *s, size_t capacity)
{
	uint64_t *old = s->keys;
	size_t old_capacity = old ? s->mask + 1 : 0;
	s->keys = PyMem_Calloc(capacity, sizeof(uint64_t));
	if (!s->keys) {
		s->keys = old;
		PyErr_NoMemory();
		return -1;
	}
	s->mask = capacity - 1;
	for (size_t i = 0; i < old_capacity; i++)
		if (old[i])
			s->keys[aset_slot(s, old[i])] = old[i];
	PyMem_Free(old);
	return 0;
}

int aset_add(AddressSet *s, uint64_t key)
{
	if (!key) {
		PyErr_SetString(PyExc_ValueError, "AddressSet: an address cannot be 0");
		return -1;
	}
	if ((!s->keys || (size_t)(s->used + 1) * 2 > s->mask + 1) &&
	    aset_resize(s, s->keys ? (s->mask + 1) * 2 : 1024) < 0)
		return -1;
	size_t i = aset_slot(s, key);
	if (!s->keys[i]) {
		s->keys[i] = key;
		s->used++;
	}
	return 0;
}

void aset_discard(AddressSet *s, uint64_t key)
{
	if (!aset_contains(s, key))
		return;
	size_t i = aset_slot(s, key), j = i;
	s->keys[i] = 0;
	s->used--;
	/* Linear probing: move back each later key of the run that its home slot no longer reaches. */
	for (;;) {
		j = (j + 1) & s->mask;
		if (!s->keys[j])
			return;
		size_t home = addr_home(s->keys[j], s->mask);
		if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
			s->keys[i] = s->keys[j];
			s->keys[j] = 0;
			i = j;
		}
	}
}

static int key_of(PyObject *v, uint64_t *key)
{
	*key = PyLong_AsUnsignedLongLong(v);
	if (*key == (uint64_t)-1 && PyErr_Occurred()) {
		if (!PyErr_ExceptionMatches(PyExc_OverflowError) && !PyErr_ExceptionMatches(PyExc_TypeError))
			return -1;
		PyErr_Clear();
		*key = 0; /* not an address: in no set */
	}
	return 0;
}

static PyObject *aset_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	if (!_PyArg_NoKeywords("AddressSet", kwds) || !PyArg_ParseTuple(args, ":AddressSet"))
		return NULL;
	return type->tp_alloc(type, 0);
}

static void aset_dealloc(AddressSet *s)
{
	PyMem_Free(s->keys);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

static Py_ssize_t aset_len(AddressSet *s)
{
	return s->used;
}

static int aset_sq_contains(AddressSet *s, PyObject *v)
{
	uint64_t key;
	return key_of(v, &key) < 0 ? -1 : aset_contains(s, key);
}

static PyObject *aset_py_add(AddressSet *s, PyObject *v)
{
	uint64_t key = PyLong_AsUnsignedLongLong(v);
	if ((key == (uint64_t)-1 && PyErr_Occurred()) || aset_add(s, key) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *aset_py_discard(AddressSet *s, PyObject *v)
{
	uint64_t key;
	if (key_of(v, &key) < 0)
		return NULL;
	aset_discard(s, key);
	Py_RETURN_NONE;
}

static PyObject *aset_difference_update(AddressSet *s, PyObject *iterable)
{
	PyObject *it = PyObject_GetIter(iterable), *v;
	if (!it)
		return NULL;
	while ((v = PyIter_Next(it))) {
		uint64_t key;
		int r = key_of(v, &key);
		Py_DECREF(v);
		if (r < 0) {
			Py_DECREF(it);
			return NULL;
		}
		aset_discard(s, key);
	}
	Py_DECREF(it);
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *aset_iter(AddressSet *s)
{
	PyObject *list = PyList_New(0);
	for (size_t i = 0; list && s->keys && i <= s->mask; i++) {
		if (!s->keys[i])
			continue;
		PyObject *v = PyLong_FromUnsignedLongLong(s->keys[i]);
		if (!v || PyList_Append(list, v) < 0)
			Py_CLEAR(list);
		Py_XDECREF(v);
	}
	if (!list)
		return NULL;
	PyObject *it = PyObject_GetIter(list);
	Py_DECREF(list);
	return it;
}

static PySequenceMethods aset_as_sequence = {
	.sq_length = (lenfunc)aset_len,
	.sq_contains = (objobjproc)aset_sq_contains,
};

static PyMethodDef aset_methods[] = {
	{"add", (PyCFunction)aset_py_add, METH_O, "Add an address (a nonzero int under 2**64)."},
	{"discard", (PyCFunction)aset_py_discard, METH_O, "Remove an address if it is there."},
	{"difference_update", (PyCFunction)aset_difference_update, METH_O,
	 "Remove every address of an iterable that is there."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject AddressSetType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "drgn_ss._fast.AddressSet",
	.tp_basicsize = sizeof(AddressSet),
	.tp_dealloc = (destructor)aset_dealloc,
	.tp_as_sequence = &aset_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "AddressSet() -> a set of kernel addresses (nonzero ints under 2**64), as a set of "
		  "ints for in, add, discard, difference_update, len and iteration.",
	.tp_iter = (getiterfunc)aset_iter,
	.tp_methods = aset_methods,
	.tp_new = aset_new,
};
