/*
 * drgn_ss._fast: the hot loops of drgn_ss.decode in C.
 *
 * walk_sockets() follows the chains of one kernel hash table and decodes every
 * socket of one network namespace into drgn_ss.inet.InetSock records, exactly as
 * drgn_ss.decode.RawDecoder does in Python (which stays the reference: the kernel
 * matrix checks both give the same records). Offsets come from Python (SockLayout),
 * so nothing here knows a kernel version.
 *
 * Memory is read from an image of physical memory where the direct map allows (a memcpy
 * from the mapped ELF core file, or a pread() of a QEMU process's memory), and otherwise
 * through a Python callable, read(address, size) -> bytes, which may
 * raise drgn.FaultError: a fault cuts the chain (a "bucket" fault) or drops the socket
 * (a "socket" fault), as in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#if PY_BYTE_ORDER != 1234 && !defined(__BYTE_ORDER__)
#error "little-endian hosts only"
#endif

/* include/net/tcp_states.h, include/net/inet_connection_sock.h */
enum {
	TCP_SYN_RECV = 3,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_LISTEN = 10,
	TCP_NEW_SYN_RECV = 12,
	ICSK_TIME_RETRANS = 1,
	ICSK_TIME_PROBE0 = 3,
	ICSK_TIME_LOSS_PROBE = 5,
	ICSK_TIME_REO_TIMEOUT = 6,
	AF_INET_ = 2,
	AF_INET6_ = 10,
};

/* drgn_ss.decode.DAMAGED, BAD_STATE, TCP_MAX_STATE; drgn_ss.tables.NULL_IN_NULLS */
#define DAMAGED "a damaged socket (no inet family or local port)"
#define BAD_STATE "a damaged socket (no such state)"
#define TCP_MAX_STATE 12
#define TCP_FIN_WAIT2 5
/* drgn_ss.decode.OTHER_PROTOCOL, IPPROTO_TCP, IPPROTO_UDP */
#define OTHER_PROTOCOL "a damaged socket (not of its table's protocol)"
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define NULL_IN_NULLS "NULL in a nulls hash chain: a zeroed node or bucket"
/* drgn_ss.tables.STRAYED, OUTSIDE, MET_AGAIN, OTHER_MARKER */
#define STRAYED "hash chain ends in another bucket's marker: a node freed and reused under the walk"
#define OUTSIDE "hash chain pointer outside the direct map: damaged"
#define MET_AGAIN "hash chain meets a node already walked: chains that loop or join"
#define OTHER_MARKER "a bucket holds another bucket's nulls marker: damaged"
/* drgn_ss.owners.SOCKET_FILE_DAMAGED */
#define SOCKET_FILE_DAMAGED "a socket file, its socket and its sock do not point at each other: damaged"

#define MAX_READ 8192

/* A member of a struct: as drgn_ss.raw.Field. size 0: absent. */
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

static void mem_release(Mem *m)
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

/*
 * Read size bytes at addr into out. 0: read; 1: a fault, whose exception is kept in
 * faults (if it is the first, and faults is not NULL); -1: another error, set.
 */
static int mem_read(Mem *m, uint64_t addr, size_t size, unsigned char *out, Faults *faults)
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

static void fault_here(Faults *faults, PyObject *fault, const char *message, uint64_t addr)
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

static int parse_field(PyObject *spec, const char *name, Field *f)
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

static Py_ssize_t spec_int(PyObject *spec, const char *name, int *ok)
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

/* The layout a walk decodes with: drgn_ss.decode.SockLayout, flattened. */
typedef struct {
	Field net, family, state, rcv_saddr, daddr, num, dport, bound_dev_if, cookie, ipv6only, refcnt;
	Field tw_substate, tw_expires, req_retrans, req_expires;
	Field uid, shutdown, sk_socket, sk_ino, protocol;
	Field ack_backlog, max_ack_backlog, rcv_nxt, copied_seq, write_seq, snd_una;
	Field pending, retransmits, probes_out, timeout, keepalive_pprev, keepalive_expires;
	Field rmem_alloc, wmem_alloc, forward_deficit;
	Py_ssize_t v6_rcv_saddr, v6_daddr, tw_end, req_end, inode_from_socket;
} Layout;

static int parse_layout(PyObject *spec, Layout *L)
{
#define F(name) if (parse_field(spec, #name, &L->name) < 0) return -1
	F(net); F(family); F(state); F(rcv_saddr); F(daddr); F(num); F(dport); F(bound_dev_if);
	F(cookie); F(ipv6only); F(refcnt); F(tw_substate); F(tw_expires); F(req_retrans); F(req_expires);
	F(uid); F(shutdown); F(sk_socket); F(sk_ino); F(protocol); F(ack_backlog); F(max_ack_backlog);
	F(rcv_nxt); F(copied_seq); F(write_seq); F(snd_una); F(pending); F(retransmits);
	F(probes_out); F(timeout); F(keepalive_pprev); F(keepalive_expires); F(rmem_alloc);
	F(wmem_alloc); F(forward_deficit);
#undef F
	int ok = 1;
	L->v6_rcv_saddr = spec_int(spec, "v6_rcv_saddr", &ok);
	L->v6_daddr = spec_int(spec, "v6_daddr", &ok);
	L->tw_end = spec_int(spec, "tw_end", &ok);
	L->req_end = spec_int(spec, "req_end", &ok);
	L->inode_from_socket = spec_int(spec, "inode_from_socket", &ok);
	if (!ok)
		return -1;
	if (L->v6_rcv_saddr < 0 || L->v6_rcv_saddr + 16 > MAX_READ || L->v6_daddr < 0 ||
	    L->v6_daddr + 16 > MAX_READ || L->tw_end > MAX_READ || L->req_end > MAX_READ) {
		PyErr_SetString(PyExc_ValueError, "bad layout");
		return -1;
	}
	return 0;
}

typedef struct {
	Layout L;
	Mem mem;
	Faults faults;
	int tcp, inodes;
	uint64_t want_net, now;
	long long hz;
	/* nets: {struct net address: its inode number}; with one entry, want_net and netns are
	 * it (compared without a dict lookup); netns is the socket's being decoded. */
	PyObject *nets, *netns, *cls, *proto, *full, *timewait, *request, *out;
	PyObject *only_netns;
	/* walked: a set of every node address the listing's walks visited (drgn_ss.tables.Walked),
	 * node_lo/node_hi where a node may be; known: a set of every struct net on the namespace
	 * list, or None; strays: {struct net: [count, a socket]} of sockets of no known namespace. */
	PyObject *walked, *known, *strays;
	uint64_t node_lo, node_hi;
	int live; /* a running kernel (walk_sockets was given head_at): see walk_chain() */
	/* The nodes this chain added to walked, taken out again if it is walked once more. */
	uint64_t *added;
	Py_ssize_t nadded, added_cap;
} Walk;

/* max(expires - now as signed long, 0) * 1000 // HZ, as a Python int. */
static PyObject *ms_until(Walk *w, uint64_t expires)
{
	int64_t delta = (int64_t)(expires - w->now);
	if (delta <= 0)
		return PyLong_FromLong(0);
	unsigned __int128 ms = (unsigned __int128)(uint64_t)delta * 1000 / (unsigned long long)w->hz;
	if (!(ms >> 64))
		return PyLong_FromUnsignedLongLong((unsigned long long)ms);
	/* Garbage from a freed socket, as big as Python makes it. */
	PyObject *d = PyLong_FromLongLong(delta), *k = PyLong_FromLong(1000), *h = PyLong_FromLongLong(w->hz);
	PyObject *p = d && k ? PyNumber_Multiply(d, k) : NULL;
	PyObject *q = p && h ? PyNumber_FloorDivide(p, h) : NULL;
	Py_XDECREF(d);
	Py_XDECREF(k);
	Py_XDECREF(h);
	Py_XDECREF(p);
	return q;
}

/* Whether cls can be made by new_record(): a tuple subclass, such as a NamedTuple. */
static int is_record_type(PyObject *cls)
{
	return PyType_Check(cls) && PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type);
}

/*
 * A cls holding items[0..n), made as tuple.__new__ makes one. It takes the references
 * to the items, and clears them; NULL if an item is NULL (a failed conversion) or
 * allocation fails, the items released all the same.
 */
static PyObject *new_record(PyTypeObject *cls, PyObject **items, Py_ssize_t n)
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

static PyObject *make_bytes(const unsigned char *buf, Py_ssize_t off, Py_ssize_t size)
{
	return PyBytes_FromStringAndSize((const char *)buf + off, size);
}

/* Append an InetSock to w->out; 0, 1 (socket fault, counted) or -1 (error). */
static int decode(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size)
{
	const Layout *L = &w->L;
	unsigned long family = get(buf, &L->family);
	unsigned long raw_state = get(buf, &L->state);
	PyObject *src, *dst;
	if (family == AF_INET6_) {
		src = make_bytes(buf, L->v6_rcv_saddr, 16);
		dst = make_bytes(buf, L->v6_daddr, 16);
	} else {
		src = make_bytes(buf, L->rcv_saddr.offset, 4);
		dst = make_bytes(buf, L->daddr.offset, 4);
	}
	uint64_t be = get(buf, &L->dport);
	unsigned long dport = ((be & 0xff) << 8) | ((be >> 8) & 0xff);
	PyObject *items[23] = {NULL};
	int r = -1;
	if (raw_state == 0 || raw_state > TCP_MAX_STATE) {
		Py_XDECREF(src);
		Py_XDECREF(dst);
		fault_here(&w->faults, w->mem.fault, BAD_STATE, addr);
		w->faults.sockets++;
		return 1;
	}
	Py_INCREF(w->proto);
	items[0] = w->proto;
	items[1] = PyLong_FromUnsignedLong(family);
	items[3] = src;
	items[4] = field_int(buf, &L->num);
	items[5] = dst;
	items[6] = PyLong_FromUnsignedLong(dport);
	items[7] = field_int(buf, &L->bound_dev_if);
	items[13] = field_int(buf, &L->cookie);
	Py_INCREF(w->netns);
	items[14] = w->netns;
	items[18] = PyLong_FromUnsignedLongLong(addr);
	if (raw_state == TCP_TIME_WAIT || raw_state == TCP_NEW_SYN_RECV) {
		int tw = raw_state == TCP_TIME_WAIT;
		Py_ssize_t end = tw ? L->tw_end : L->req_end;
		if (got < end) {
			int rr = mem_read(&w->mem, addr, end, buf, &w->faults);
			if (rr) {
				r = rr;
				goto out;
			}
		}
		if (tw) {
			uint64_t substate = get(buf, &L->tw_substate);
			if (substate != TCP_FIN_WAIT2 && substate != TCP_TIME_WAIT) {
				fault_here(&w->faults, w->mem.fault, BAD_STATE, addr);
				r = 1;
				goto out;
			}
		}
		items[2] = tw ? field_int(buf, &L->tw_substate) : PyLong_FromLong(TCP_SYN_RECV);
		Py_INCREF(Py_None);
		items[8] = Py_None;
		items[9] = PyLong_FromLong(0);
		items[10] = PyLong_FromLong(0);
		items[11] = PyLong_FromLong(0);
		items[12] = PyLong_FromLong(0);
		Py_INCREF(Py_None);
		items[15] = Py_None;
		Py_INCREF(Py_None);
		items[16] = Py_None;
		items[17] = tw ? w->timewait : w->request;
		Py_INCREF(items[17]);
		items[19] = PyLong_FromLong(tw ? 3 : 1);
		items[20] = ms_until(w, get(buf, tw ? &L->tw_expires : &L->req_expires));
		items[21] = tw ? PyLong_FromLong(0) : field_int(buf, &L->req_retrans);
		items[22] = PyLong_FromLong(0);
	} else {
		if (got < size) { /* a full socket after all: fault here if it must */
			int rr = mem_read(&w->mem, addr, size, buf, &w->faults);
			if (rr) {
				r = rr;
				goto out;
			}
		}
		if (get(buf, &L->protocol) != (w->tcp ? IPPROTO_TCP_ : IPPROTO_UDP_)) {
			fault_here(&w->faults, w->mem.fault, OTHER_PROTOCOL, addr);
			r = 1;
			goto out;
		}
		long long recv_q, send_q;
		int timer = 0;
		PyObject *timer_ms = NULL;
		uint64_t retrans = 0;
		if (w->tcp) {
			if (raw_state == TCP_LISTEN) {
				recv_q = (long long)get(buf, &L->ack_backlog);
				send_q = (long long)get(buf, &L->max_ack_backlog);
			} else {
				uint64_t diff = (get(buf, &L->rcv_nxt) - get(buf, &L->copied_seq)) & 0xffffffffULL;
				recv_q = diff >= (1ULL << 31) ? 0 : (long long)diff;
				send_q = (long long)((get(buf, &L->write_seq) - get(buf, &L->snd_una)) & 0xffffffffULL);
			}
			uint64_t pending = get(buf, &L->pending);
			if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_PROBE0 ||
			    pending == ICSK_TIME_LOSS_PROBE || pending == ICSK_TIME_REO_TIMEOUT) {
				timer_ms = ms_until(w, get(buf, &L->timeout));
				if (pending == ICSK_TIME_PROBE0) {
					timer = 4;
					retrans = get(buf, &L->probes_out);
				} else {
					timer = 1;
					retrans = get(buf, &L->retransmits);
				}
			} else if (get(buf, &L->keepalive_pprev)) {
				timer = 2;
				timer_ms = ms_until(w, get(buf, &L->keepalive_expires));
				retrans = get(buf, &L->probes_out);
			}
		} else {
			recv_q = (long long)get(buf, &L->rmem_alloc) - (long long)get(buf, &L->forward_deficit);
			send_q = (long long)get(buf, &L->wmem_alloc) - 1;
		}
		uint64_t sk_socket = get(buf, &L->sk_socket);
		if (L->sk_ino.size) {
			items[11] = field_int(buf, &L->sk_ino);
		} else if (sk_socket && w->inodes) {
			unsigned char ino[8];
			int rr = mem_read(&w->mem, sk_socket + L->inode_from_socket, 8, ino, &w->faults);
			if (rr) {
				r = rr;
				Py_XDECREF(timer_ms);
				goto out;
			}
			uint64_t v;
			memcpy(&v, ino, 8);
			items[11] = PyLong_FromUnsignedLongLong(v);
		} else {
			items[11] = PyLong_FromLong(0);
		}
		items[2] = PyLong_FromUnsignedLong(raw_state);
		if (family == AF_INET6_ && (raw_state == TCP_LISTEN || raw_state == TCP_CLOSE))
			items[8] = get(buf, &L->ipv6only) ? Py_True : Py_False;
		else
			items[8] = Py_None;
		Py_INCREF(items[8]);
		items[9] = PyLong_FromLongLong(recv_q);
		items[10] = PyLong_FromLongLong(send_q);
		items[12] = field_int(buf, &L->uid);
		items[15] = field_int(buf, &L->shutdown);
		Py_INCREF(Py_None);
		items[16] = Py_None;
		Py_INCREF(w->full);
		items[17] = w->full;
		items[19] = PyLong_FromLong(timer);
		items[20] = timer_ms ? timer_ms : PyLong_FromLong(0);
		items[21] = PyLong_FromUnsignedLongLong(retrans);
		items[22] = PyLong_FromUnsignedLongLong(sk_socket);
	}
	PyObject *rec = new_record((PyTypeObject *)w->cls, items, 23);
	if (!rec)
		goto out;
	r = PyList_Append(w->out, rec);
	Py_DECREF(rec);
out:
	for (int i = 0; i < 23; i++)
		Py_XDECREF(items[i]);
	if (r == 1)
		w->faults.sockets++;
	return r;
}

static int parse_mem(PyObject *spec, Mem *m)
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

/* How one table's chains link: what walk_chain() needs besides the walk. */
typedef struct {
	Py_ssize_t link, size, least, max_chain;
	int nulls;
	long long marker_base; /* the nulls marker ending bucket 0's chain; -1: not checked */
} Chaining;

/*
 * Follow one chain from pos (bucket i's first pointer), decoding the sockets of the
 * namespace into w->out, as drgn_ss.decode.RawDecoder._chain does. 0: the chain was
 * followed to its end; 1: it was cut and counted (a fault, a loop, a NULL in a nulls
 * chain, another bucket's marker) or a socket on it was; -1: a Python error.
 */
static int walk_chain(Walk *w, const Chaining *c, Py_ssize_t i, uint64_t pos)
{
	unsigned char buf[MAX_READ];
	Py_ssize_t hops = 0, sockets = w->faults.sockets;
	uint64_t addr = 0;
	w->nadded = 0;
	while (pos && !(c->nulls && (pos & 1))) {
		addr = pos - c->link;
		if (addr < w->node_lo || addr >= w->node_hi || (addr & 7)) {
			fault_here(&w->faults, w->mem.fault, OUTSIDE, pos);
			w->faults.buckets++;
			return 1;
		}
		PyObject *node = PyLong_FromUnsignedLongLong(addr);
		if (!node)
			return -1;
		int met = PySet_Contains(w->walked, node);
		if (met < 0) {
			Py_DECREF(node);
			return -1;
		}
		if (met && w->live) { /* a loop in this chain, or a socket moved here (drgn_ss.tables.Walked) */
			for (Py_ssize_t k = 0; k < w->nadded && met == 1; k++)
				if (w->added[k] == addr)
					met = 2;
		}
		if (met && !(w->live && met == 1)) {
			Py_DECREF(node);
			fault_here(&w->faults, w->mem.fault, MET_AGAIN, pos);
			w->faults.buckets++;
			return 1;
		}
		Py_ssize_t got = c->size;
		int r = mem_read(&w->mem, addr, c->size, buf, NULL);
		if (r == 1) { /* a missing page after the node? read what the chain needs */
			got = c->least;
			r = mem_read(&w->mem, addr, c->least, buf, &w->faults);
		}
		if (r == 0 && !met && PySet_Add(w->walked, node) < 0)
			r = -1;
		Py_DECREF(node);
		if (r < 0)
			return -1;
		if (r == 1) {
			w->faults.buckets++;
			return 1;
		}
		if (met) { /* moved here from a chain already walked: listed there; go on through it */
			memcpy(&pos, buf + c->link, 8);
			if (++hops > c->max_chain) {
				fault_here(&w->faults, w->mem.fault, "hash chain too long: a loop?", pos);
				w->faults.buckets++;
				return 1;
			}
			continue;
		}
		if (w->nadded == w->added_cap) {
			Py_ssize_t cap = w->added_cap ? 2 * w->added_cap : 64;
			uint64_t *more = PyMem_Realloc(w->added, cap * sizeof(uint64_t));
			if (!more) {
				PyErr_NoMemory();
				return -1;
			}
			w->added = more;
			w->added_cap = cap;
		}
		w->added[w->nadded++] = addr;
		uint64_t sk_net = get(buf, &w->L.net);
		w->netns = NULL;
		if (w->only_netns) {
			if (sk_net == w->want_net)
				w->netns = w->only_netns;
		}
		if (!w->netns && (!w->only_netns || w->known != Py_None)) {
			PyObject *key = PyLong_FromUnsignedLongLong(sk_net);
			if (!key)
				return -1;
			if (!w->only_netns) {
				w->netns = PyDict_GetItemWithError(w->nets, key); /* borrowed */
				if (!w->netns && PyErr_Occurred()) {
					Py_DECREF(key);
					return -1;
				}
			}
			if (!w->netns && w->known != Py_None) { /* another namespace's, or of none? */
				int ok = PySet_Contains(w->known, key);
				if (ok == 0) { /* counted by the caller, unless the namespace is new (live) */
					PyObject *stray = PyDict_GetItemWithError(w->strays, key), *entry = NULL;
					if (stray)
						entry = Py_BuildValue("[LO]", PyLong_AsLongLong(PyList_GET_ITEM(stray, 0)) + 1,
								      PyList_GET_ITEM(stray, 1));
					else if (!PyErr_Occurred())
						entry = Py_BuildValue("[LK]", 1LL, (unsigned long long)addr);
					if (!entry || PyErr_Occurred() || PyDict_SetItem(w->strays, key, entry) < 0)
						ok = -1;
					Py_XDECREF(entry);
				}
				if (ok < 0) {
					Py_DECREF(key);
					return -1;
				}
			}
			Py_DECREF(key);
		}
		if (w->netns) { /* shared tables hold other namespaces' sockets too */
			uint64_t family = get(buf, &w->L.family);
			if (!get(buf, &w->L.refcnt)) {
				/* being freed: skipped quietly, as the kernel's lookups skip it */
			} else if ((family != AF_INET_ && family != AF_INET6_) || !get(buf, &w->L.num)) {
				fault_here(&w->faults, w->mem.fault, DAMAGED, addr);
				w->faults.sockets++;
			} else if (decode(w, addr, buf, got, c->size) < 0) {
				return -1;
			}
		}
		memcpy(&pos, buf + c->link, 8);
		if (++hops > c->max_chain) {
			fault_here(&w->faults, w->mem.fault, "hash chain too long: a loop?", pos);
			w->faults.buckets++;
			return 1;
		}
	}
	if (c->nulls && !pos) {
		fault_here(&w->faults, w->mem.fault, NULL_IN_NULLS, addr);
		w->faults.buckets++;
		return 1;
	}
	if (c->marker_base >= 0 && (pos >> 1) != (uint64_t)(c->marker_base + i)) {
		fault_here(&w->faults, w->mem.fault, STRAYED, addr);
		w->faults.buckets++;
		return 1;
	}
	return w->faults.sockets != sockets;
}

/* Take the nodes the last walk_chain() added out of walked again: it is walked once more. */
static int forget_chain(Walk *w)
{
	for (Py_ssize_t k = 0; k < w->nadded; k++) {
		PyObject *node = PyLong_FromUnsignedLongLong(w->added[k]);
		if (!node || PySet_Discard(w->walked, node) < 0) {
			Py_XDECREF(node);
			return -1;
		}
		Py_DECREF(node);
	}
	w->nadded = 0;
	return 0;
}

PyDoc_STRVAR(walk_sockets_doc,
"walk_sockets(mem, heads, link, nulls, size, least, max_chain, layout, nets, tcp, inodes,\n"
"             now, hz, cls, proto, kinds, marker_base, head_at, walked, node_lo, node_hi,\n"
"             known, strays)\n"
"    -> (records, bucket_faults, socket_faults, first)\n"
"\n"
"Follow the chains starting at heads (first pointers) and decode the sockets of the\n"
"namespaces in nets ({struct net address: inode number}), as\n"
"drgn_ss.decode.RawDecoder._walk does. marker_base: the nulls marker\n"
"ending bucket 0's chain (-1: not checked). head_at: None, or a callable that reads\n"
"bucket i's first pointer again, for one more walk of a chain that was cut (a live kernel).\n"
"walked: a set of the node addresses walked so far (a node met again cuts its chain), added\n"
"to; node_lo, node_hi: where a node may be. known: a set of every struct net, or None;\n"
"strays: a dict that gets {struct net: [count, a socket]} for sockets of no known namespace.");

static PyObject *walk_sockets(PyObject *self, PyObject *args)
{
	PyObject *memspec, *heads, *layout, *kinds, *head_at;
	Chaining c;
	unsigned long long now;
	PyObject *result = NULL;
	Walk w;
	memset(&w, 0, sizeof(w));
	unsigned long long node_lo, node_hi;
	if (!PyArg_ParseTuple(args, "OOnpnnnOOppKLOOOLOOKKOO", &memspec, &heads, &c.link, &c.nulls, &c.size,
			      &c.least, &c.max_chain, &layout, &w.nets, &w.tcp, &w.inodes, &now, &w.hz, &w.cls,
			      &w.proto, &kinds, &c.marker_base, &head_at, &w.walked, &node_lo, &node_hi,
			      &w.known, &w.strays))
		return NULL;
	w.node_lo = node_lo;
	w.node_hi = node_hi;
	w.live = head_at != Py_None;
	if (!PyDict_Check(layout) || !PyList_Check(heads) || !is_record_type(w.cls) || w.hz <= 0 ||
	    !PyDict_Check(w.nets) || !PySet_Check(w.walked) || !PyDict_Check(w.strays) ||
	    (w.known != Py_None && !PyAnySet_Check(w.known))) {
		PyErr_SetString(PyExc_TypeError, "walk_sockets: bad arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(kinds, "OOO", &w.full, &w.timewait, &w.request))
		return NULL;
	if (c.size > MAX_READ || c.least > c.size || c.link < 0 || c.link + 8 > c.least) {
		PyErr_SetString(PyExc_ValueError, "walk_sockets: bad sizes");
		return NULL;
	}
	if (parse_layout(layout, &w.L) < 0)
		return NULL;
	if (parse_mem(memspec, &w.mem) < 0) {
		mem_release(&w.mem);
		return NULL;
	}
	if (PyDict_GET_SIZE(w.nets) == 1) {
		Py_ssize_t at = 0;
		PyObject *key;
		PyDict_Next(w.nets, &at, &key, &w.only_netns);
		w.want_net = PyLong_AsUnsignedLongLong(key);
		if (w.want_net == (uint64_t)-1 && PyErr_Occurred()) {
			mem_release(&w.mem);
			return NULL;
		}
	}
	w.now = now;
	w.out = PyList_New(0);
	if (!w.out) {
		mem_release(&w.mem);
		return NULL;
	}
	Py_ssize_t n = PyList_GET_SIZE(heads);
	for (Py_ssize_t i = 0; i < n; i++) {
		uint64_t pos = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(heads, i));
		if (pos == (uint64_t)-1 && PyErr_Occurred())
			goto done;
		if (!pos && c.nulls) { /* a nulls chain ends in a marker, never NULL */
			fault_here(&w.faults, w.mem.fault, NULL_IN_NULLS, 0);
			w.faults.buckets++;
			continue;
		}
		if (c.nulls && (pos & 1) && c.marker_base >= 0 && (pos >> 1) != (uint64_t)(c.marker_base + i)) {
			fault_here(&w.faults, w.mem.fault, OTHER_MARKER, pos); /* an empty bucket holds its own */
			w.faults.buckets++;
			continue;
		}
		if (!pos || (c.nulls && (pos & 1)))
			continue;
		Py_ssize_t start = PyList_GET_SIZE(w.out);
		Faults before = w.faults;
		int r = walk_chain(&w, &c, i, pos);
		if (r < 0)
			goto done;
		if (r == 0 || head_at == Py_None)
			continue;
		/* A live kernel: walk the chain once more from its head, as if the first time had not been. */
		if (PyList_SetSlice(w.out, start, PyList_GET_SIZE(w.out), NULL) < 0 || forget_chain(&w) < 0)
			goto done;
		if (!before.first && w.faults.first)
			Py_CLEAR(w.faults.first);
		w.faults.buckets = before.buckets;
		w.faults.sockets = before.sockets;
		PyObject *again = PyObject_CallFunction(head_at, "n", i);
		if (!again) {
			if (!PyErr_ExceptionMatches(w.mem.fault))
				goto done;
			PyErr_Clear();
			fault_here(&w.faults, w.mem.fault, "a bucket's head could not be read again", pos);
			w.faults.buckets++;
			continue;
		}
		pos = PyLong_AsUnsignedLongLong(again);
		Py_DECREF(again);
		if (pos == (uint64_t)-1 && PyErr_Occurred())
			goto done;
		if (pos && !(c.nulls && (pos & 1)) && walk_chain(&w, &c, i, pos) < 0)
			goto done;
	}
	result = Py_BuildValue("OnnO", w.out, w.faults.buckets, w.faults.sockets,
			       w.faults.first ? w.faults.first : Py_None);
done: /* result is NULL unless the walk got to the end */
	PyMem_Free(w.added);
	mem_release(&w.mem);
	Py_XDECREF(w.faults.first);
	Py_DECREF(w.out);
	return result;
}

/* -- owners: every process's open sockets ---------------------------------------------- */

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
"drgn_ss.owners.raw_kernel_owners does: only for a socket file whose struct socket points\n"
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
			PyObject *fields[3] = {comm, PyLong_FromLongLong(holders[k].pid),
					       PyLong_FromLongLong(holders[k].fd)};
			PyObject *o = new_record(type, fields, 3);
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

/* -- rendering: ss's cells, its buffer accounting, and padded lines ---------------------- */

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

/* misc/ss.c's output buffer, as drgn_ss.render.TokenBuffer (the reference). */
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
"cells (the header row first), as drgn_ss.render.TokenBuffer.add_line says.");

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
"drgn_ss.render's str.format() line does. None if a cell is not ASCII (padding then\n"
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
"As drgn_ss.render.Formatter.users.");

typedef struct {
	unsigned long long key;
	Py_ssize_t index;
} KeyOrder;

/*
 * Put order[] in increasing order of bits 6..37 of its keys (two passes of a radix sort):
 * enough to visit slab objects by address, whatever the higher bits (for locality only).
 */
static int sort_by_address(KeyOrder *order, Py_ssize_t n)
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
	for (int shift = 6; shift < 38; shift += 16) {
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
	/* two passes: the sorted keys are back in order[] */
	PyMem_Free(tmp);
	PyMem_Free(count);
	return 0;
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
		b.len = 0;
		if (buf_add(&b, " users:(", 8) < 0)
			goto error;
		for (Py_ssize_t k = 0; k < PyList_GET_SIZE(holders); k++) {
			PyObject *h = PyList_GET_ITEM(holders, k);
			if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 3) {
				PyErr_SetString(PyExc_TypeError, "users_cells: holders are (comm, pid, fd)");
				goto error;
			}
			PyObject *name = cached(names, PyTuple_GET_ITEM(h, 0));
			if (!name)
				goto error;
			Py_ssize_t nlen;
			const char *s = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &nlen) : NULL;
			if (!s) {
				if (!PyErr_Occurred())
					PyErr_SetString(PyExc_TypeError, "users_cells: names are str");
				Py_DECREF(name);
				goto error;
			}
			char num[64];
			long long pid = PyLong_AsLongLong(PyTuple_GET_ITEM(h, 1));
			long long fd = PyLong_AsLongLong(PyTuple_GET_ITEM(h, 2));
			int m = 0;
			memcpy(num, "\",pid=", 6);
			m = 6 + put_decimal(num + 6, pid);
			memcpy(num + m, ",fd=", 4);
			m += 4 + put_decimal(num + m + 4, fd);
			num[m++] = ')';
			int rr = (k ? buf_add(&b, ",(\"", 3) : buf_add(&b, "(\"", 2)) < 0 ||
				 buf_add(&b, s, nlen) < 0 || buf_add(&b, num, m) < 0;
			Py_DECREF(name);
			if (rr || PyErr_Occurred())
				goto error;
		}
		if (buf_add(&b, ")", 1) < 0)
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

PyDoc_STRVAR(socket_cells_doc,
"socket_cells(socks, fields, hosts, services, queues, states, numeric, ephemeral)\n"
"    -> list[list[str]]\n"
"\n"
"ss's Netid, State, Recv-Q, Send-Q, Local Address:, Port, Peer Address: and Port cells\n"
"of each record, as drgn_ss.render.Formatter.columns makes them. fields: the records'\n"
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
			PyErr_SetString(PyExc_TypeError, "socket_cells: records are InetSock tuples");
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

/* -- BTF: the type index ---------------------------------------------------------------- */

PyDoc_STRVAR(btf_index_doc,
"btf_index(data, start, end) -> (offsets, named)\n"
"\n"
"One pass over a BTF type section, data[start:end], as drgn_ss.btf.Btf does in Python:\n"
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
"drgn_ss.kallsyms.find_names does in Python: for each name in wanted (bytes), the\n"
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

static PyMethodDef methods[] = {
	{"walk_sockets", walk_sockets, METH_VARARGS, walk_sockets_doc},
	{"socket_holders", socket_holders, METH_VARARGS, socket_holders_doc},
	{"render_breaks", render_breaks, METH_VARARGS, render_breaks_doc},
	{"max_lengths", max_lengths, METH_VARARGS, max_lengths_doc},
	{"format_lines", format_lines, METH_VARARGS, format_lines_doc},
	{"users_cells", users_cells, METH_VARARGS, users_cells_doc},
	{"socket_cells", socket_cells, METH_VARARGS, socket_cells_doc},
	{"btf_index", btf_index, METH_VARARGS, btf_index_doc},
	{"kallsyms_find", kallsyms_find, METH_VARARGS, kallsyms_find_doc},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "drgn_ss._fast",
	"The hot loops of drgn_ss in C; drgn_ss.decode is the reference.", -1, methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void)
{
	return PyModule_Create(&module);
}
