/*
 * drgn_ss._fast: what its C files share (helpers/_fast_*.c, one a domain).
 *
 * Reading kernel memory (Mem, mem_read(): an image of physical memory where the direct map
 * allows, else a Python callable that may raise drgn.FaultError), counting what could not
 * be read (Faults), reading struct members at offsets from Python (Field: as
 * drgn_ss.kernel.fields.Field), and making records (new_record(): NamedTuples such as
 * drgn_ss.sockets.record.Socket). Defined in _fast_module.c, with the module.
 */
#ifndef DRGN_SS_FAST_H
#define DRGN_SS_FAST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#if PY_BYTE_ORDER != 1234 && !defined(__BYTE_ORDER__)
#error "little-endian hosts only"
#endif

/* Shared between the files of the module, not exported from it. */
#define FAST_INTERNAL __attribute__((visibility("hidden")))

#define MAX_READ 8192

/* The fields of drgn_ss.sockets.record.Socket, in its order (a test checks the count). */
#define SOCKET_FIELDS 24

/* A member of a struct: as drgn_ss.kernel.fields.Field. size 0: absent. */
typedef struct {
	Py_ssize_t offset;
	int size, sign, shift, bits;
} Field;

typedef struct {
	/*
	 * An image of physical memory: the mapped ELF core file (view), or a file to pread()
	 * (fd: a QEMU process's /proc/PID/mem); physical [starts[i], ends[i]) is at offsets[i].
	 */
	Py_buffer view;
	int have_view, fd;
	uint64_t *starts, *ends, *offsets;
	Py_ssize_t nseg;
	/* Direct map [lo, hi): physical = virtual - lo. */
	uint64_t lo, hi;
	PyObject *read;  /* read(address, size) -> bytes */
	PyObject *fault; /* drgn.FaultError */
} Mem;

/* What a walk could not read: counted, with the first fault kept for the message. */
typedef struct {
	Py_ssize_t buckets, sockets;
	PyObject *first;
} Faults;

FAST_INTERNAL void mem_release(Mem *m);
/*
 * Read size bytes at addr into out. 0: read; 1: a fault, whose exception is kept in
 * faults (if it is the first, and faults is not NULL); -1: another error, set.
 */
FAST_INTERNAL int mem_read(Mem *m, uint64_t addr, size_t size, unsigned char *out, Faults *faults);
/* Ask the CPU to start loading size bytes at addr where the image is mapped (nothing else). */
FAST_INTERNAL void mem_prefetch(const Mem *m, uint64_t addr, size_t size);

/* Byte ranges of a struct that a decoder reads: [off, off + len), sorted, apart. */
typedef struct {
	uint32_t off, len;
} Span;
#define MAX_SPANS 48
/*
 * The ranges of size bytes at addr that spans name, where the image maps all size bytes:
 * each copied to the same offset in out (the rest of out is left as it was), 0. Otherwise
 * mem_read() of all size bytes. A decoder that reads only inside spans sees what it would
 * have, and only the cache lines it needs are touched.
 */
FAST_INTERNAL int mem_read_spans(Mem *m, uint64_t addr, size_t size, const Span *spans, int nspans,
				 unsigned char *out, Faults *faults);
/* Where the image maps all size bytes at addr, or NULL (read them with mem_read()). */
FAST_INTERNAL const unsigned char *mem_ptr(const Mem *m, uint64_t addr, size_t size);
/*
 * Spans covering the ranges [starts[i], starts[i] + lens[i]) (n of them; those of length 0
 * are left out) within [0, size), widened to 64-byte lines from the struct's start and
 * merged: their number, at most MAX_SPANS (else 0: read everything).
 */
FAST_INTERNAL int make_spans(const Py_ssize_t *starts, const Py_ssize_t *lens, int n, Py_ssize_t size, Span *out);
/* spec: (mapping or None, fd or -1, starts, ends, offsets, lo, hi, read, FaultError) */
FAST_INTERNAL int parse_mem(PyObject *spec, Mem *m);

/* Keep a fault at addr (if it is the first) that Python would raise with this message. */
static inline void fault_here(Faults *faults, PyObject *fault, const char *message, uint64_t addr)
{
	if (!faults->first)
		faults->first = PyObject_CallFunction(fault, "sK", message, (unsigned long long)addr);
	PyErr_Clear();
}

/* A field's value: sign-extended if signed (and not a bitfield). */
static inline uint64_t get(const unsigned char *buf, const Field *f)
{
	uint64_t v = 0;
	memcpy(&v, buf + f->offset, f->size);
	if (f->bits)
		return (v >> f->shift) & (f->bits >= 64 ? ~0ULL : (1ULL << f->bits) - 1);
	if (f->sign && f->size < 8 && (v >> (8 * f->size - 1)) & 1)
		v |= ~0ULL << (8 * f->size);
	return v;
}

static inline PyObject *field_int(const unsigned char *buf, const Field *f)
{
	uint64_t v = get(buf, f);
	if (f->sign && !f->bits)
		return PyLong_FromLongLong((long long)v);
	return PyLong_FromUnsignedLongLong(v);
}

/* spec[name]: a Field from (offset, size, signed, shift, bits); absent or None: size 0. */
FAST_INTERNAL int parse_field(PyObject *spec, const char *name, Field *f);
/* spec[name] as a Py_ssize_t; *ok = 0 (an exception set) if it is not there or not an int. */
FAST_INTERNAL Py_ssize_t spec_int(PyObject *spec, const char *name, int *ok);

/* Whether cls can be made by new_record(): a tuple subclass, such as a NamedTuple. */
FAST_INTERNAL int is_record_type(PyObject *cls);
/*
 * A cls holding items[0..n), made as tuple.__new__ makes one. It takes the references
 * to the items, and clears them; NULL if an item is NULL (a failed conversion) or
 * allocation fails, the items released all the same.
 */
FAST_INTERNAL PyObject *new_record(PyTypeObject *cls, PyObject **items, Py_ssize_t n);

/* Each domain's functions, added to the module in this order (NULL-terminated). */
/* drgn_ss._fast.AddressSet (_fast_aset.c): a set of nonzero 64-bit addresses. */
typedef struct {
	PyObject_HEAD
	uint64_t *keys; /* open addressing, linear probing; 0: an empty slot */
	size_t mask;    /* slots - 1 (a power of two) */
	Py_ssize_t used;
} AddressSet;
FAST_INTERNAL extern PyTypeObject AddressSetType;
/* Where an address's probe starts in an open-addressing table of mask + 1 slots. */
static inline size_t addr_home(uint64_t key, size_t mask)
{
	return (size_t)((key >> 3) * 0x9E3779B97F4A7C15ULL) & mask;
}
/* The slot of key in such a table (linear probing; 0: an empty slot), or the empty one it goes in. */
static inline size_t addr_slot(const uint64_t *keys, size_t mask, uint64_t key)
{
	size_t i = addr_home(key, mask);
	while (keys[i] && keys[i] != key)
		i = (i + 1) & mask;
	return i;
}
#define AddressSet_Check(op) Py_IS_TYPE(op, &AddressSetType)
FAST_INTERNAL int aset_contains(const AddressSet *s, uint64_t key);
/* 0, or -1 and an error (no memory, a 0 key). */
FAST_INTERNAL int aset_add(AddressSet *s, uint64_t key);
FAST_INTERNAL void aset_discard(AddressSet *s, uint64_t key);

/*
 * drgn_ss._fast.SockTable (_fast_table.c): inet sockets as compact rows, a
 * drgn_ss.sockets.record.Socket each on demand. The walk decodes into TRow; what would
 * be a Python object per field is a number here, and a record is made only when asked for.
 */
typedef struct {
	uint64_t addr, sk_socket, ino, cookie, expires, netns;
	int64_t recv_q, send_q;
	uint64_t ifindex, uid, retrans, shutdown;
	uint8_t src[16], dst[16];
	uint16_t sport, dport, neg; /* neg: the ROW_NEG_* of fields that are negative ints */
	uint8_t family, state, kind, timer, v6only, proto, flags;
} TRow;
enum { ROW_NEG_IFINDEX = 1, ROW_NEG_INO = 2, ROW_NEG_UID = 4, ROW_NEG_COOKIE = 8, ROW_NEG_RETRANS = 16,
       ROW_NEG_SHUTDOWN = 32 };
enum { ROW_TIMER_MS = 1, ROW_NO_SHUTDOWN = 2 };	  /* flags: ms_until(expires); shutdown None */
enum { ROW_V6ONLY_NONE = 0, ROW_V6ONLY_FALSE = 1, ROW_V6ONLY_TRUE = 2 };
enum { KIND_FULL, KIND_TIMEWAIT, KIND_REQUEST };
#define TABLE_PROTOS 4

typedef struct {
	PyObject_HEAD
	TRow *rows;
	Py_ssize_t n, cap;
	PyObject *cls;			/* Socket */
	PyObject *kinds[3];		/* "full", "timewait", "request" */
	PyObject *protos[TABLE_PROTOS];	/* the netids rows name by index */
	int nprotos;
	uint64_t now;			/* jiffies, and HZ, for timer_ms */
	long long hz;
} SockTable;
FAST_INTERNAL extern PyTypeObject SockTableType;
#define SockTable_Check(op) Py_IS_TYPE(op, &SockTableType)
/* A new row at the table's end (zeroed), or NULL and an error. */
FAST_INTERNAL TRow *table_push(SockTable *t);
/* The index of proto in t->protos, added if new; -1 and an error if there are too many. */
FAST_INTERNAL int table_proto(SockTable *t, PyObject *proto);
/* max(expires - now as signed long, 0) * 1000 // hz, as a Python int (big for garbage). */
FAST_INTERNAL PyObject *ms_until(uint64_t now, long long hz, uint64_t expires);
/* Row i as a Socket record. */
FAST_INTERNAL PyObject *table_record(SockTable *t, Py_ssize_t i);

/* A key and where it came from, to visit things in the order of their keys. */
typedef struct {
	unsigned long long key;
	Py_ssize_t index;
} KeyOrder;
/* order[] in increasing order of its keys (a radix sort, _fast_render.c): 0, or -1 and an error. */
FAST_INTERNAL int sort_keys(KeyOrder *order, Py_ssize_t n);

/* One process's fd holding a socket (_fast_owners.c). */
typedef struct {
	uint64_t sock; /* the struct sock's address */
	long long pid;
	long long fd;
	Py_ssize_t task; /* index into the tasks list, for the comm */
} Holder;

/*
 * drgn_ss._fast.HolderMap (_fast_owners.c): {struct sock address: [Owner, ...]} as
 * socket_holders() finds them, kept as a sorted array of Holder: a mapping whose lists
 * are made when asked for. Keys set from Python (MPTCP subflows) go in extra.
 */
typedef struct {
	PyObject_HEAD
	Holder *h;
	Py_ssize_t n;
	uint64_t *keys;	   /* the distinct socks, in order */
	Py_ssize_t *first; /* keys[k]'s holders: h[first[k]] .. h[first[k + 1] - 1] */
	Py_ssize_t nkeys;
	PyObject *tasks, *cls, *extra;
} HolderMap;
FAST_INTERNAL extern PyTypeObject HolderMapType;
#define HolderMap_Check(op) Py_IS_TYPE(op, &HolderMapType)
/* The index in m->keys of key, or -1. */
FAST_INTERNAL Py_ssize_t holders_find(const HolderMap *m, uint64_t key);
/* Each row of t's index in m->keys, or -1 (PyMem_Malloc'd, t->n of them), or NULL and an error. */
FAST_INTERNAL Py_ssize_t *holders_of_rows(const HolderMap *m, const SockTable *t);
/* m->keys[k]'s holders as a list of Owner records (a new reference). */
FAST_INTERNAL PyObject *holders_list(const HolderMap *m, Py_ssize_t k);

FAST_INTERNAL extern PyMethodDef fast_walk_methods[];   /* _fast_walk.c */
FAST_INTERNAL extern PyMethodDef fast_owners_methods[]; /* _fast_owners.c */
FAST_INTERNAL extern PyMethodDef fast_render_methods[]; /* _fast_render.c */
FAST_INTERNAL extern PyMethodDef fast_btf_methods[];    /* _fast_btf.c */

#endif
