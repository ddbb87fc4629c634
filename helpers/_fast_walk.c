/*
 * drgn_ss._fast, the hash-chain walk and socket decoding: walk_sockets().
 * Reference: drgn_ss.sockets.inet (InetDecoder._walk, ._chain) and drgn_ss.tables.hashtable (the checks).
 *
 * walk_sockets() follows the chains of one kernel hash table and decodes every
 * socket of the namespaces asked into drgn_ss.sockets.record.Socket records, exactly as
 * drgn_ss.sockets.inet.InetDecoder does in Python (which stays the reference: the kernel
 * matrix checks both give the same records). Offsets come from Python (SockLayout),
 * so nothing here knows a kernel version. A fault cuts the chain (a "bucket" fault)
 * or drops the socket (a "socket" fault), as in Python.
 */
#include "_fast.h"

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

/* drgn_ss.sockets.inet.DAMAGED, BAD_STATE, TCP_MAX_STATE; drgn_ss.tables.hashtable.NULL_IN_NULLS */
#define DAMAGED "a damaged socket (no inet family or local port)"
#define BAD_STATE "a damaged socket (no such state)"
#define TCP_MAX_STATE 12
#define TCP_FIN_WAIT2 5
/* drgn_ss.sockets.inet.OTHER_PROTOCOL, IPPROTO_TCP, IPPROTO_UDP */
#define OTHER_PROTOCOL "a damaged socket (not of its table's protocol)"
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define NULL_IN_NULLS "NULL in a nulls hash chain: a zeroed node or bucket"
/* drgn_ss.tables.hashtable.STRAYED, OUTSIDE, MET_AGAIN, OTHER_MARKER */
#define STRAYED "hash chain ends in another bucket's marker: a node freed and reused under the walk"
#define OUTSIDE "hash chain pointer outside the direct map: damaged"
#define MET_AGAIN "hash chain meets a node already walked: chains that loop or join"
#define OTHER_MARKER "a bucket holds another bucket's nulls marker: damaged"
/* drgn_ss.tables.hashtable.UNHASHED */
#define UNHASHED "a hash chain's node was unhashed under the walk"

/* The layout a walk decodes with: drgn_ss.sockets.inet.SockLayout, flattened. */
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

/*
 * The spans of a node that the inet walk reads: the chain's next and pprev, the node's
 * struct net, and every field of the layout (absent ones have size 0).
 */
static int inet_spans(const Layout *L, const Field *net, Py_ssize_t link, Py_ssize_t size, Span *out)
{
	const Field *f[] = {
		&L->net, &L->family, &L->state, &L->rcv_saddr, &L->daddr, &L->num, &L->dport,
		&L->bound_dev_if, &L->cookie, &L->ipv6only, &L->refcnt, &L->tw_substate, &L->tw_expires,
		&L->req_retrans, &L->req_expires, &L->uid, &L->shutdown, &L->sk_socket, &L->sk_ino,
		&L->protocol, &L->ack_backlog, &L->max_ack_backlog, &L->rcv_nxt, &L->copied_seq,
		&L->write_seq, &L->snd_una, &L->pending, &L->retransmits, &L->probes_out, &L->timeout,
		&L->keepalive_pprev, &L->keepalive_expires, &L->rmem_alloc, &L->wmem_alloc,
		&L->forward_deficit, net,
	};
	enum { NF = sizeof(f) / sizeof(f[0]) };
	Py_ssize_t starts[NF + 3], lens[NF + 3];
	for (int i = 0; i < NF; i++) {
		starts[i] = f[i]->offset;
		lens[i] = f[i]->size;
	}
	starts[NF] = link;
	lens[NF] = 16;
	starts[NF + 1] = L->v6_rcv_saddr;
	lens[NF + 1] = 16;
	starts[NF + 2] = L->v6_daddr;
	lens[NF + 2] = 16;
	return make_spans(starts, lens, NF + 3, size, out);
}

typedef struct Walk Walk;
/* What a walk does with each node of a namespace it lists: decode it into w->out (0), count
 * it (0), or fail (-1). got: the bytes of buf read; size: what a full socket needs. */
typedef int (*Visit)(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size);

struct Walk {
	Layout L;
	/* The node's struct net, and what is done with a node of a namespace listed. */
	Field net;
	Visit visit;
	/* A node of another namespace is damage (a namespace's own table), not skipped. */
	int foreign_damage;
	void *unix_layout;
	Py_ssize_t skb_limit;
	Mem mem;
	Faults faults;
	int tcp, inodes;
	uint64_t want_net, now;
	long long hz;
	/* nets: {struct net address: its inode number}; with one entry, want_net and netns are
	 * it (compared without a dict lookup); netns is the socket's being decoded. */
	PyObject *nets, *netns, *cls, *proto, *full, *timewait, *request, *out;
	PyObject *only_netns;
	/* walked: a set of every node address the listing's walks visited (drgn_ss.tables.hashtable.Walked),
	 * node_lo/node_hi where a node may be; known: a set of every struct net on the namespace
	 * list, or None; strays: {struct net: [count, a socket]} of sockets of no known namespace. */
	PyObject *walked, *known, *strays;
	uint64_t node_lo, node_hi;
	int live; /* a running kernel (walk_sockets was given head_at): see walk_chain() */
	/* The nodes this chain added to walked, taken out again if it is walked once more. */
	uint64_t *added;
	Py_ssize_t nadded, added_cap;
	/* Run on w->out when every chain is walked (memory still readable): 0 or -1. */
	int (*finish)(Walk *w);
	/* What a visit keeps for finish: side[i] for the record w->out[i] (the unix walk:
	 * each socket's address, inode and peer), trimmed with w->out. */
	struct Side { uint64_t addr, ino, peer, sock; } *side;
	Py_ssize_t nside, side_cap;
	/* The inet walk's output: rows of table (given), or records in out made through a row of
	 * scratch; proto_index: the walk's table in theirs. */
	SockTable *table, *scratch;
	int proto_index;
	PyObject *inum_of; /* the nets value w->inum was read from */
	uint64_t inum;
	/* What of a node walk_chain() reads from a mapped image (0 spans: all of it). */
	Span spans[MAX_SPANS];
	int nspans;
};

static int read_u64(Walk *w, uint64_t addr, uint64_t *v)
{
	unsigned char b[8];
	int r = mem_read(&w->mem, addr, 8, b, &w->faults);
	if (r == 0)
		memcpy(v, b, 8);
	return r;
}

static int read_u32(Walk *w, uint64_t addr, uint64_t *v)
{
	unsigned char b[4];
	uint32_t x;
	int r = mem_read(&w->mem, addr, 4, b, &w->faults);
	if (r == 0) {
		memcpy(&x, b, 4);
		*v = x;
	}
	return r;
}

/* A field's value into *v, and bit into *neg if field_int() would make it a negative int. */
static inline void put(const unsigned char *buf, const Field *f, uint64_t *v, uint16_t *neg, uint16_t bit)
{
	*v = get(buf, f);
	if (f->sign && !f->bits && (int64_t)*v < 0)
		*neg |= bit;
}

/* Decode a socket into row r: 0, 1 (a socket fault, kept but not counted) or -1 (error). */
static int decode_row(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size, TRow *r)
{
	const Layout *L = &w->L;
	unsigned long family = get(buf, &L->family);
	unsigned long raw_state = get(buf, &L->state);
	if (raw_state == 0 || raw_state > TCP_MAX_STATE) {
		fault_here(&w->faults, w->mem.fault, BAD_STATE, addr);
		return 1;
	}
	r->family = (uint8_t)family;
	if (family == AF_INET6_) {
		memcpy(r->src, buf + L->v6_rcv_saddr, 16);
		memcpy(r->dst, buf + L->v6_daddr, 16);
	} else {
		memcpy(r->src, buf + L->rcv_saddr.offset, 4);
		memcpy(r->dst, buf + L->daddr.offset, 4);
	}
	uint64_t be = get(buf, &L->dport);
	r->dport = (uint16_t)(((be & 0xff) << 8) | ((be >> 8) & 0xff));
	r->sport = (uint16_t)get(buf, &L->num);
	put(buf, &L->bound_dev_if, &r->ifindex, &r->neg, ROW_NEG_IFINDEX);
	put(buf, &L->cookie, &r->cookie, &r->neg, ROW_NEG_COOKIE);
	r->addr = addr;
	if (raw_state == TCP_TIME_WAIT || raw_state == TCP_NEW_SYN_RECV) {
		int tw = raw_state == TCP_TIME_WAIT;
		Py_ssize_t end = tw ? L->tw_end : L->req_end;
		if (got < end) {
			int rr = mem_read(&w->mem, addr, end, buf, &w->faults);
			if (rr)
				return rr;
		}
		if (tw) {
			uint64_t substate = get(buf, &L->tw_substate);
			if (substate != TCP_FIN_WAIT2 && substate != TCP_TIME_WAIT) {
				fault_here(&w->faults, w->mem.fault, BAD_STATE, addr);
				return 1;
			}
			r->state = (uint8_t)substate;
		} else {
			r->state = TCP_SYN_RECV;
			put(buf, &L->req_retrans, &r->retrans, &r->neg, ROW_NEG_RETRANS);
		}
		r->flags = ROW_NO_SHUTDOWN | ROW_TIMER_MS;
		r->kind = tw ? KIND_TIMEWAIT : KIND_REQUEST;
		r->timer = tw ? 3 : 1;
		r->expires = get(buf, tw ? &L->tw_expires : &L->req_expires);
		return 0;
	}
	if (got < size) { /* a full socket after all: fault here if it must */
		int rr = mem_read(&w->mem, addr, size, buf, &w->faults);
		if (rr)
			return rr;
	}
	if (get(buf, &L->protocol) != (w->tcp ? IPPROTO_TCP_ : IPPROTO_UDP_)) {
		fault_here(&w->faults, w->mem.fault, OTHER_PROTOCOL, addr);
		return 1;
	}
	if (w->tcp) {
		if (raw_state == TCP_LISTEN) {
			r->recv_q = (long long)get(buf, &L->ack_backlog);
			r->send_q = (long long)get(buf, &L->max_ack_backlog);
		} else {
			uint64_t diff = (get(buf, &L->rcv_nxt) - get(buf, &L->copied_seq)) & 0xffffffffULL;
			r->recv_q = diff >= (1ULL << 31) ? 0 : (long long)diff;
			r->send_q = (long long)((get(buf, &L->write_seq) - get(buf, &L->snd_una)) & 0xffffffffULL);
		}
		uint64_t pending = get(buf, &L->pending);
		if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_PROBE0 ||
		    pending == ICSK_TIME_LOSS_PROBE || pending == ICSK_TIME_REO_TIMEOUT) {
			r->flags |= ROW_TIMER_MS;
			r->expires = get(buf, &L->timeout);
			r->timer = pending == ICSK_TIME_PROBE0 ? 4 : 1;
			r->retrans = get(buf, pending == ICSK_TIME_PROBE0 ? &L->probes_out : &L->retransmits);
		} else if (get(buf, &L->keepalive_pprev)) {
			r->flags |= ROW_TIMER_MS;
			r->timer = 2;
			r->expires = get(buf, &L->keepalive_expires);
			r->retrans = get(buf, &L->probes_out);
		}
	} else {
		r->recv_q = (long long)get(buf, &L->rmem_alloc) - (long long)get(buf, &L->forward_deficit);
		r->send_q = (long long)get(buf, &L->wmem_alloc) - 1;
	}
	r->sk_socket = get(buf, &L->sk_socket);
	if (L->sk_ino.size) {
		put(buf, &L->sk_ino, &r->ino, &r->neg, ROW_NEG_INO);
	} else if (r->sk_socket && w->inodes) {
		int rr = read_u64(w, r->sk_socket + L->inode_from_socket, &r->ino);
		if (rr)
			return rr;
	}
	r->state = (uint8_t)raw_state;
	if (family == AF_INET6_ && (raw_state == TCP_LISTEN || raw_state == TCP_CLOSE))
		r->v6only = get(buf, &L->ipv6only) ? ROW_V6ONLY_TRUE : ROW_V6ONLY_FALSE;
	put(buf, &L->uid, &r->uid, &r->neg, ROW_NEG_UID);
	put(buf, &L->shutdown, &r->shutdown, &r->neg, ROW_NEG_SHUTDOWN);
	r->kind = KIND_FULL;
	return 0;
}

/*
 * Append a socket to w->table (a row), or to w->out (a record made from a row of
 * w->scratch); 0, 1 (socket fault, counted) or -1 (error).
 */
static int decode(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size)
{
	SockTable *t = w->table ? w->table : w->scratch;
	TRow *r = table_push(t);
	if (!r)
		return -1;
	if (w->netns != w->inum_of) { /* the namespace's inode number, read once a namespace */
		w->inum = PyLong_AsUnsignedLongLong(w->netns);
		if (w->inum == (uint64_t)-1 && PyErr_Occurred()) {
			t->n--;
			return -1;
		}
		w->inum_of = w->netns;
	}
	r->netns = w->inum;
	r->proto = (uint8_t)w->proto_index;
	int rr = decode_row(w, addr, buf, got, size, r);
	if (rr == 1)
		w->faults.sockets++;
	if (rr || !w->table) {
		PyObject *rec = rr ? NULL : table_record(t, t->n - 1);
		t->n--;
		if (rr)
			return rr;
		rr = rec ? PyList_Append(w->out, rec) : -1;
		Py_XDECREF(rec);
	}
	return rr;
}

/* An inet socket of a namespace listed: decoded unless freed or damaged. */
static int visit_inet(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size)
{
	uint64_t family = get(buf, &w->L.family);
	if (!get(buf, &w->L.refcnt))
		return 0; /* being freed: skipped quietly, as the kernel's lookups skip it */
	if ((family != AF_INET_ && family != AF_INET6_) || !get(buf, &w->L.num)) {
		fault_here(&w->faults, w->mem.fault, DAMAGED, addr);
		w->faults.sockets++;
		return 0;
	}
	return decode(w, addr, buf, got, size) < 0 ? -1 : 0;
}

/* How one table's chains link: what walk_chain() needs besides the walk. */
typedef struct {
	Py_ssize_t link, size, least, max_chain;
	int nulls;
	long long marker_base; /* the nulls marker ending bucket 0's chain; -1: not checked */
	/* A plain hlist's bucket 0 first pointer's address and the distance between buckets: on
	 * a live kernel each node's pprev must point back at the pointer followed to it (0: not
	 * checked; drgn_ss.tables.hashtable.Chains.first_at). */
	uint64_t first_at, stride;
} Chaining;

/* The walked nodes (w->walked): a drgn_ss._fast.AddressSet, or a Python set of ints. */
static int walked_contains(Walk *w, uint64_t addr)
{
	if (AddressSet_Check(w->walked))
		return aset_contains((AddressSet *)w->walked, addr);
	PyObject *node = PyLong_FromUnsignedLongLong(addr);
	int met = node ? PySet_Contains(w->walked, node) : -1;
	Py_XDECREF(node);
	return met;
}

static int walked_add(Walk *w, uint64_t addr)
{
	if (AddressSet_Check(w->walked))
		return aset_add((AddressSet *)w->walked, addr);
	PyObject *node = PyLong_FromUnsignedLongLong(addr);
	int r = node ? PySet_Add(w->walked, node) : -1;
	Py_XDECREF(node);
	return r;
}

static int walked_discard(Walk *w, uint64_t addr)
{
	if (AddressSet_Check(w->walked)) {
		aset_discard((AddressSet *)w->walked, addr);
		return 0;
	}
	PyObject *node = PyLong_FromUnsignedLongLong(addr);
	int r = node ? PySet_Discard(w->walked, node) : -1;
	Py_XDECREF(node);
	return r < 0 ? -1 : 0;
}

/*
 * Follow one chain from pos (bucket i's first pointer), decoding the sockets of the
 * namespace into w->out, as drgn_ss.sockets.inet.InetDecoder._chain does. 0: the chain was
 * followed to its end; 1: it was cut and counted (a fault, a loop, a NULL in a nulls
 * chain, another bucket's marker) or a socket on it was; -1: a Python error.
 */
static int walk_chain(Walk *w, const Chaining *c, Py_ssize_t i, uint64_t pos)
{
	unsigned char buf[MAX_READ];
	Py_ssize_t hops = 0, sockets = w->faults.sockets;
	uint64_t addr = 0;
	/* where the next node's pprev must point (a plain hlist, live): 0, not checked */
	uint64_t back = (w->live && c->stride && !c->nulls) ? c->first_at + (uint64_t)i * c->stride : 0;
	w->nadded = 0;
	while (pos && !(c->nulls && (pos & 1))) {
		addr = pos - c->link;
		if (addr < w->node_lo || addr >= w->node_hi || (addr & 7)) {
			fault_here(&w->faults, w->mem.fault, OUTSIDE, pos);
			w->faults.buckets++;
			return 1;
		}
		int met = walked_contains(w, addr);
		if (met < 0)
			return -1;
		if (met && w->live) { /* a loop in this chain, or a socket moved here (drgn_ss.tables.hashtable.Walked) */
			for (Py_ssize_t k = 0; k < w->nadded && met == 1; k++)
				if (w->added[k] == addr)
					met = 2;
		}
		if (met && !(w->live && met == 1)) {
			fault_here(&w->faults, w->mem.fault, MET_AGAIN, pos);
			w->faults.buckets++;
			return 1;
		}
		Py_ssize_t got = c->size;
		int r = mem_read_spans(&w->mem, addr, c->size, w->spans, w->nspans, buf, NULL);
		if (r == 1) { /* a missing page after the node? read what the chain needs */
			got = c->least;
			r = mem_read(&w->mem, addr, c->least, buf, &w->faults);
		}
		if (r == 0 && !met && walked_add(w, addr) < 0)
			r = -1;
		if (r < 0)
			return -1;
		if (r == 1) {
			w->faults.buckets++;
			return 1;
		}
		if (back) {
			uint64_t pprev = 0;
			if (got >= c->link + 16)
				memcpy(&pprev, buf + c->link + 8, 8);
			if (pprev != back) {
				if (r == 0 && !met && walked_discard(w, addr) < 0)
					return -1;
				fault_here(&w->faults, w->mem.fault, UNHASHED, addr);
				w->faults.buckets++;
				return 1;
			}
			back = pos;
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
		uint64_t sk_net = get(buf, &w->net);
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
			if (w->visit(w, addr, buf, got, c->size) < 0)
				return -1;
		} else if (w->foreign_damage) {
			fault_here(&w->faults, w->mem.fault, "a damaged socket (of another network namespace)", addr);
			w->faults.sockets++;
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
	for (Py_ssize_t k = 0; k < w->nadded; k++)
		if (walked_discard(w, w->added[k]) < 0)
			return -1;
	w->nadded = 0;
	return 0;
}

PyDoc_STRVAR(walk_sockets_doc,
"walk_sockets(mem, heads, link, nulls, size, least, max_chain, layout, nets, tcp, inodes,\n"
"             now, hz, cls, proto, kinds, marker_base, head_at, walked, node_lo, node_hi,\n"
"             known, strays, first_at, stride)\n"
"    -> (records, bucket_faults, socket_faults, first)\n"
"\n"
"Follow the chains starting at heads (first pointers) and decode the sockets of the\n"
"namespaces in nets ({struct net address: inode number}), as\n"
"drgn_ss.sockets.inet.InetDecoder._walk does. marker_base: the nulls marker\n"
"ending bucket 0's chain (-1: not checked). head_at: None, or a callable that reads\n"
"bucket i's first pointer again, for one more walk of a chain that was cut (a live kernel).\n"
"walked: a set of the node addresses walked so far (an AddressSet, or a set of ints: a node\n"
"met again cuts its chain), added\n"
"to; node_lo, node_hi: where a node may be. known: a set of every struct net, or None;\n"
"strays: a dict that gets {struct net: [count, a socket]} for sockets of no known namespace.\n"
"first_at, stride: a plain hlist's bucket 0 first pointer's address and the distance\n"
"between buckets (0: not checked): live, a node whose pprev does not point back at the\n"
"pointer followed to it was unhashed under the walk, and its chain is walked again.");

static PyObject *walk_heads(Walk *w_, PyObject *heads, Chaining *c_, PyObject *head_at);

static PyObject *walk_sockets(PyObject *self, PyObject *args)
{
	PyObject *memspec, *heads, *layout, *kinds, *head_at;
	Chaining c;
	unsigned long long now;
	Walk w;
	memset(&w, 0, sizeof(w));
	unsigned long long node_lo, node_hi;
	unsigned long long first_at, stride;
	PyObject *table = Py_None;
	if (!PyArg_ParseTuple(args, "OOnpnnnOOppKLOOOLOOKKOOKK|O", &memspec, &heads, &c.link, &c.nulls, &c.size,
			      &c.least, &c.max_chain, &layout, &w.nets, &w.tcp, &w.inodes, &now, &w.hz, &w.cls,
			      &w.proto, &kinds, &c.marker_base, &head_at, &w.walked, &node_lo, &node_hi,
			      &w.known, &w.strays, &first_at, &stride, &table))
		return NULL;
	if (table != Py_None && (!SockTable_Check(table) || ((SockTable *)table)->now != now ||
				 ((SockTable *)table)->hz != w.hz || ((SockTable *)table)->cls != w.cls)) {
		PyErr_SetString(PyExc_TypeError, "walk_sockets: out is a SockTable of this cls, now and hz");
		return NULL;
	}
	w.node_lo = node_lo;
	w.node_hi = node_hi;
	c.first_at = first_at;
	c.stride = stride;
	w.live = head_at != Py_None;
	if (!PyDict_Check(layout) || !PyList_Check(heads) || !is_record_type(w.cls) || w.hz <= 0 ||
	    !PyDict_Check(w.nets) || !(PySet_Check(w.walked) || AddressSet_Check(w.walked)) ||
	    !PyDict_Check(w.strays) ||
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
	w.net = w.L.net;
	w.visit = visit_inet;
	w.nspans = inet_spans(&w.L, &w.net, c.link, c.size, w.spans);
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
	/* Rows go to the table given, or through a scratch table of the walk's own to records. */
	w.scratch = (SockTable *)PyObject_CallFunction((PyObject *)&SockTableType, "OOKL", w.cls, kinds,
						       (unsigned long long)now, w.hz);
	w.table = table != Py_None ? (SockTable *)table : NULL;
	if (!w.scratch || (w.proto_index = table_proto(w.table ? w.table : w.scratch, w.proto)) < 0) {
		Py_XDECREF(w.scratch);
		mem_release(&w.mem);
		return NULL;
	}
	return walk_heads(&w, heads, &c, head_at);
}

/*
 * Walk every chain from heads into w->out (made here), then release the walk: (records,
 * bucket_faults, socket_faults, first), or NULL with an error set.
 */
/*
 * The chains walk_heads() looks ahead along at once, and how far along each. A chain is
 * a line of dependent loads (each node's next pointer is in the node): walked one after
 * the other, every node costs a memory round trip. prewalk() follows PREWALK_CHAINS chains
 * side by side, so that their loads overlap, and asks for every line walk_chain() will
 * read of their nodes (and the nodes' slots in walked): walk_chain() then finds them in
 * the cache. It only reads, and only from a mapped image, within the chain walk's bounds;
 * what it finds is not trusted, so nothing it meets changes what walk_chain() does.
 * Measured on a 6.1 dump of 1,000,000 sockets (131,072 buckets, 7.6 a chain): see
 * docs/design.md, "Speed: how".
 */
#define PREWALK_CHAINS 16
#define PREWALK_HOPS 64

static void prewalk(const Walk *w, const Chaining *c, PyObject *heads, Py_ssize_t i, Py_ssize_t n)
{
	uint64_t cur[PREWALK_CHAINS];
	int k, live = 0;
	for (k = 0; k < PREWALK_CHAINS; k++) {
		uint64_t pos = i + k < n ? PyLong_AsUnsignedLongLong(PyList_GET_ITEM(heads, i + k)) : 0;
		if (pos == (uint64_t)-1 && PyErr_Occurred()) {
			PyErr_Clear(); /* walk_heads() says so when it gets there */
			pos = 0;
		}
		cur[k] = (pos && !(c->nulls && (pos & 1))) ? pos : 0;
		live |= cur[k] != 0;
	}
	const AddressSet *set = AddressSet_Check(w->walked) ? (const AddressSet *)w->walked : NULL;
	for (int hop = 0; hop < PREWALK_HOPS && live; hop++) {
		live = 0;
		for (k = 0; k < PREWALK_CHAINS; k++) {
			if (!cur[k])
				continue;
			uint64_t addr = cur[k] - c->link;
			const unsigned char *p = (addr >= w->node_lo && addr < w->node_hi && !(addr & 7))
				? mem_ptr(&w->mem, addr, c->size) : NULL;
			cur[k] = 0;
			if (!p)
				continue;
			for (int s = 0; s < w->nspans; s++)
				for (uint32_t b = 0; b < w->spans[s].len; b += 64)
					__builtin_prefetch(p + w->spans[s].off + b);
			if (set)
				__builtin_prefetch(&set->keys[addr_home(addr, set->mask)]);
			uint64_t next;
			memcpy(&next, p + c->link, 8);
			if (next && !(c->nulls && (next & 1)))
				live |= (cur[k] = next) != 0;
		}
	}
}

static PyObject *walk_heads(Walk *w_, PyObject *heads, Chaining *c_, PyObject *head_at)
{
	Walk w = *w_;
	Chaining c = *c_;
	PyObject *result = NULL;
	w.out = PyList_New(0);
	if (!w.out) {
		mem_release(&w.mem);
		return NULL;
	}
	Py_ssize_t n = PyList_GET_SIZE(heads);
	int ahead = w.nspans && !getenv("DRGN_SS_NO_PREWALK");
	for (Py_ssize_t i = 0; i < n; i++) {
		if (ahead && i % PREWALK_CHAINS == 0)
			prewalk(&w, &c, heads, i, n);
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
		Py_ssize_t start = w.table ? w.table->n : PyList_GET_SIZE(w.out);
		Faults before = w.faults;
		int r = walk_chain(&w, &c, i, pos);
		if (r < 0)
			goto done;
		if (r == 0 || head_at == Py_None)
			continue;
		/* A live kernel: walk the chain once more from its head, as if the first time had not been. */
		if (w.table)
			w.table->n = start;
		else if (PyList_SetSlice(w.out, start, PyList_GET_SIZE(w.out), NULL) < 0)
			goto done;
		if (forget_chain(&w) < 0)
			goto done;
		if (w.nside > start)
			w.nside = start;
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
	if (w.finish && w.finish(&w) < 0)
		goto done;
	result = Py_BuildValue("OnnO", w.table ? (PyObject *)w.table : w.out, w.faults.buckets, w.faults.sockets,
			       w.faults.first ? w.faults.first : Py_None);
done: /* result is NULL unless the walk got to the end */
	PyMem_Free(w.added);
	PyMem_Free(w.side);
	mem_release(&w.mem);
	Py_XDECREF(w.faults.first);
	Py_DECREF(w.out);
	Py_XDECREF(w.scratch);
	return result;
}

/* -- unix sockets: drgn_ss.sockets.unix._Decoder.decode() in C -------------------------- */

#define AF_UNIX_ 1
#define SOCK_STREAM_ 1
#define SOCK_SEQPACKET_ 5
#define SUN_PATH 108
/* drgn_ss.sockets.unix.NOT_UNIX */
#define NOT_UNIX "a damaged socket (not a unix socket)"

/* drgn_ss.sockets.unix.UnixLayout, flattened. */
typedef struct {
	Field family, state, cookie, refcnt, type, shutdown, sk_socket, uid, max_ack_backlog, wmem_alloc;
	Field rq_next, rq_qlen, addr, peer, sk_ino, inq_len, address_len;
	Py_ssize_t receive_queue, sk_socket_at, inode_from_socket, address_name, skb_len, skb_consumed;
	PyObject *cls, *extra_cls, *netids; /* Socket, UnixExtra, (u_str, u_dgr, u_seq) */
} UnixLayout;

static int parse_unix_layout(PyObject *spec, UnixLayout *U)
{
#define F(name) if (parse_field(spec, #name, &U->name) < 0) return -1
	F(family); F(state); F(cookie); F(refcnt); F(type); F(shutdown); F(sk_socket); F(uid);
	F(max_ack_backlog); F(wmem_alloc); F(rq_next); F(rq_qlen); F(addr); F(peer); F(sk_ino);
	F(inq_len); F(address_len);
#undef F
	int ok = 1;
	U->receive_queue = spec_int(spec, "receive_queue", &ok);
	U->sk_socket_at = spec_int(spec, "sk_socket_at", &ok);
	U->inode_from_socket = spec_int(spec, "inode_from_socket", &ok);
	U->address_name = spec_int(spec, "address_name", &ok);
	U->skb_len = spec_int(spec, "skb_len", &ok);
	U->skb_consumed = spec_int(spec, "skb_consumed", &ok);
	if (!ok)
		return -1;
	if (U->address_name < 0 || U->address_name > MAX_READ || U->address_len.offset + U->address_len.size >
	    U->address_name + 8) {
		PyErr_SetString(PyExc_ValueError, "bad unix layout");
		return -1;
	}
	return 0;
}

/* sock_i_ino() of a sock: through its struct socket, or its own sk_ino (6.18+). */
static int unix_inode(Walk *w, const UnixLayout *U, uint64_t sk, uint64_t *ino)
{
	if (U->sk_ino.size)
		return read_u64(w, sk + U->sk_ino.offset, ino);
	uint64_t sock;
	int r = read_u64(w, sk + U->sk_socket_at, &sock);
	if (r)
		return r;
	*ino = 0;
	return sock ? read_u64(w, sock + U->inode_from_socket, ino) : 0;
}

/* unix_inq_len() of a stream or seqpacket socket: its receive queue's unread bytes, the
 * queue walked as drgn_ss.kernel.memory.list_nodes walks it (bounded, loop-checked). */
static int unix_unread(Walk *w, const UnixLayout *U, uint64_t sk, uint64_t *total)
{
	uint64_t head = sk + U->receive_queue, pos = 0, after, len, consumed;
	PyObject *seen = PySet_New(NULL);
	int r = seen ? read_u64(w, head, &pos) : -1;
	*total = 0;
	while (r == 0 && pos != head) {
		PyObject *key = PyLong_FromUnsignedLongLong(pos);
		int met = key ? PySet_Contains(seen, key) : -1;
		if (met < 0) {
			r = -1;
		} else if (met) {
			fault_here(&w->faults, w->mem.fault, "a receive queue loops back: a freed node?", pos);
			r = 1;
		} else if (PySet_GET_SIZE(seen) >= w->skb_limit) {
			fault_here(&w->faults, w->mem.fault, "a receive queue longer than the kernel could hold: a loop?",
				   pos);
			r = 1;
		} else if (!(r = read_u64(w, pos, &after)) && !(r = read_u32(w, pos + U->skb_len, &len)) &&
			   !(r = read_u32(w, pos + U->skb_consumed, &consumed))) {
			r = PySet_Add(seen, key);
			*total = (*total + ((len - consumed) & 0xffffffffULL)) & 0xffffffffULL;
			pos = after;
		}
		Py_XDECREF(key);
	}
	Py_XDECREF(seen);
	return r;
}

/* A bound name's bytes (struct unix_address: len less the family's two), or NULL and 1 (a
 * fault, kept) or -1 (an error). */
static PyObject *unix_name(Walk *w, const UnixLayout *U, uint64_t addr, int *r)
{
	unsigned char buf[MAX_READ + SUN_PATH];
	*r = mem_read(&w->mem, addr, (size_t)U->address_name, buf, &w->faults);
	if (*r)
		return NULL;
	long long length = (long long)get(buf, &U->address_len) - 2;
	if (length < 0 || length > SUN_PATH) {
		fault_here(&w->faults, w->mem.fault, "a unix socket's name is damaged (its length)", addr);
		*r = 1;
		return NULL;
	}
	if (length && (*r = mem_read(&w->mem, addr + U->address_name, (size_t)length, buf, &w->faults)))
		return NULL;
	PyObject *name = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)length);
	if (!name)
		*r = -1;
	return name;
}

/* Fill items[] (SOCKET_FIELDS) for one unix socket: 0, 1 (a fault: counted) or -1. */
static int unix_items(Walk *w, const UnixLayout *U, uint64_t addr, const unsigned char *buf, uint64_t ino,
		      PyObject **items)
{
	uint64_t state = get(buf, &U->state), type = get(buf, &U->type), rq_next = get(buf, &U->rq_next);
	uint64_t rq_qlen = get(buf, &U->rq_qlen), name_addr = get(buf, &U->addr), peer = get(buf, &U->peer);
	uint64_t recv_q, send_q;
	int r = 0;
	if (state == 0 || state > 12) {
		fault_here(&w->faults, w->mem.fault, NOT_UNIX, addr);
		return 1;
	}
	if (state == TCP_LISTEN) {
		recv_q = rq_qlen;
		send_q = get(buf, &U->max_ack_backlog);
	} else {
		send_q = (get(buf, &U->wmem_alloc) - 1) & 0xffffffffULL;
		if (!rq_qlen && rq_next == addr + U->receive_queue)
			recv_q = 0;
		else if (type == SOCK_STREAM_ && U->inq_len.size)
			recv_q = get(buf, &U->inq_len);
		else if (type == SOCK_STREAM_ || type == SOCK_SEQPACKET_)
			r = unix_unread(w, U, addr, &recv_q);
		else if (rq_next != addr + U->receive_queue)
			r = read_u32(w, rq_next + U->skb_len, &recv_q);
		else
			recv_q = 0;
		if (r)
			return r;
	}
	PyObject *name = Py_None;
	Py_INCREF(name);
	if (name_addr) {
		Py_DECREF(name);
		if (!(name = unix_name(w, U, name_addr, &r)))
			return r;
	}
	PyObject *netid = PyTuple_GET_ITEM(U->netids, type == SOCK_STREAM_ ? 0 : type == SOCK_SEQPACKET_ ? 2 : 1);
	PyObject *extra[5] = {PyLong_FromUnsignedLongLong(type), name, Py_None, Py_None,
			      PyLong_FromUnsignedLongLong(peer)};
	Py_INCREF(name);
	Py_INCREF(Py_None);
	Py_INCREF(Py_None);
	Py_INCREF(netid);
	items[0] = netid;
	items[1] = PyLong_FromLong(AF_UNIX_);
	items[2] = PyLong_FromUnsignedLongLong(state);
	items[3] = name == Py_None ? PyBytes_FromStringAndSize("", 0) : (Py_INCREF(name), name);
	items[4] = PyLong_FromUnsignedLongLong(ino & 0xffffffffULL);
	items[5] = PyBytes_FromStringAndSize("", 0);
	items[6] = PyLong_FromLong(0); /* the peer's inode: unix_peers(), when the walk is done */
	items[7] = PyLong_FromLong(0);
	Py_INCREF(Py_None);
	items[8] = Py_None;
	items[9] = PyLong_FromUnsignedLongLong(recv_q);
	items[10] = PyLong_FromUnsignedLongLong(send_q);
	items[11] = PyLong_FromUnsignedLongLong(ino);
	items[12] = field_int(buf, &U->uid);
	items[13] = field_int(buf, &U->cookie);
	Py_INCREF(w->netns);
	items[14] = w->netns;
	items[15] = field_int(buf, &U->shutdown);
	Py_INCREF(Py_None);
	items[16] = Py_None;
	Py_INCREF(w->full);
	items[17] = w->full;
	items[18] = PyLong_FromUnsignedLongLong(addr);
	items[19] = PyLong_FromLong(0);
	items[20] = PyLong_FromLong(0);
	items[21] = PyLong_FromLong(0);
	items[22] = field_int(buf, &U->sk_socket);
	items[23] = new_record((PyTypeObject *)U->extra_cls, extra, 5);
	Py_DECREF(name);
	return items[23] ? 0 : -1;
}

/* An open-addressing map of sock address -> inode number (addresses are never 0), probed
 * as an AddressSet is (addr_slot()). */
typedef struct {
	uint64_t *keys, *values;
	size_t mask;
} InodeMap;

static size_t inode_slot(const InodeMap *m, uint64_t key)
{
	return addr_slot(m->keys, m->mask, key);
}

/* Set item i of a record only the walk has seen (the list holds its only reference). */
static int set_new_item(PyObject *rec, Py_ssize_t i, PyObject *value)
{
	if (!value)
		return -1;
	Py_SETREF(((PyTupleObject *)rec)->ob_item[i], value);
	return 0;
}

/*
 * The inode of each unix socket met (sock_i_ino(): its struct socket's inode), read in one
 * pass once the walk is done, a few ahead prefetched; a socket without one (not accepted
 * yet) is not listed, one whose inode cannot be read is counted (side[i].addr = 0: dropped).
 */
static int unix_inodes(Walk *w)
{
	const UnixLayout *U = w->unix_layout;
	for (Py_ssize_t i = 0; i < w->nside; i++) {
		struct Side *s = &w->side[i];
		if (i + 8 < w->nside && w->side[i + 8].sock)
			mem_prefetch(&w->mem, w->side[i + 8].sock + U->inode_from_socket, 8);
		if (!s->sock)
			continue;
		int r = read_u64(w, s->sock + U->inode_from_socket, &s->ino);
		if (r < 0)
			return -1;
		if (r || !s->ino) {
			w->faults.sockets += r;
			s->addr = 0;
			continue;
		}
		PyObject *rec = PyList_GET_ITEM(w->out, i);
		PyObject *low = PyLong_FromUnsignedLongLong(s->ino & 0xffffffffULL);
		if (low && s->ino <= 0xffffffffULL) /* one int for both (the inode numbers ss prints) */
			Py_INCREF(low);
		if (set_new_item(rec, 4, low) < 0 ||
		    set_new_item(rec, 11, s->ino <= 0xffffffffULL ? low : PyLong_FromUnsignedLongLong(s->ino)) < 0)
			return -1;
	}
	return 0;
}

/*
 * The peer inode of every unix socket listed (unix_diag's UNIX_DIAG_PEER: sock_i_ino() of
 * unix_peer()): from the walk's own sockets where the peer was listed too (a connected
 * pair: both ends are in the table), else read as unix_inode() reads it; a socket whose
 * peer cannot be read is dropped and counted, as any socket the walk could not read.
 */
static int unix_peers(Walk *w)
{
	const UnixLayout *U = w->unix_layout;
	Py_ssize_t n = PyList_GET_SIZE(w->out), kept = 0;
	if (w->nside != n) {
		PyErr_SetString(PyExc_SystemError, "unix_peers: records and side data differ");
		return -1;
	}
	InodeMap m = {NULL, NULL, 1};
	while (m.mask < (size_t)n * 2)
		m.mask <<= 1;
	m.keys = PyMem_Calloc(m.mask, sizeof(uint64_t));
	m.values = PyMem_Malloc(m.mask * sizeof(uint64_t));
	m.mask -= 1;
	int r = m.keys && m.values ? 0 : (PyErr_NoMemory(), -1);
	for (Py_ssize_t i = 0; r == 0 && i < n; i++) {
		if (!w->side[i].addr)
			continue;
		size_t slot = inode_slot(&m, w->side[i].addr);
		m.keys[slot] = w->side[i].addr;
		m.values[slot] = w->side[i].ino;
	}
	for (Py_ssize_t i = 0; r == 0 && i < n; i++) {
		PyObject *rec = PyList_GET_ITEM(w->out, i);
		uint64_t peer = w->side[i].peer, ino = 0;
		int got = 0;
		if (!w->side[i].addr)
			continue; /* dropped by unix_inodes() */
		if (peer) {
			size_t slot = inode_slot(&m, peer);
			if (m.keys[slot])
				ino = m.values[slot];
			else if ((got = unix_inode(w, U, peer, &ino)) < 0)
				break;
		}
		if (got) { /* a fault: kept by unix_inode(); the socket is not listed */
			w->faults.sockets++;
			continue;
		}
		if (ino && set_new_item(rec, 6, PyLong_FromUnsignedLongLong(ino & 0xffffffffULL)) < 0) {
			r = -1;
			break;
		}
		if (kept != i) {
			Py_INCREF(rec);
			if (PyList_SetItem(w->out, kept, rec) < 0) {
				r = -1;
				break;
			}
		}
		kept++;
	}
	if (r == 0 && PyErr_Occurred())
		r = -1;
	if (r == 0 && kept != n)
		r = PyList_SetSlice(w->out, kept, n, NULL);
	PyMem_Free(m.keys);
	PyMem_Free(m.values);
	return r;
}

static int unix_finish(Walk *w)
{
	return unix_inodes(w) < 0 ? -1 : unix_peers(w);
}

/* A unix socket of a namespace listed: decoded as unix_diag reports it, unless freed, not
 * accepted yet (no inode: not listed), or damaged (counted). */
static int visit_unix(Walk *w, uint64_t addr, unsigned char *buf, Py_ssize_t got, Py_ssize_t size)
{
	const UnixLayout *U = w->unix_layout;
	if (!get(buf, &U->refcnt))
		return 0; /* being freed: unix_diag's walk would not meet it */
	int r = 0;
	if (get(buf, &U->family) != AF_UNIX_) {
		fault_here(&w->faults, w->mem.fault, NOT_UNIX, addr);
		r = 1;
	} else if (got < size) {
		r = mem_read(&w->mem, addr, size, buf, &w->faults);
	}
	/* The inode: the sock's own (6.18+), or its struct socket's. Of a dump, read by
	 * unix_inodes() once the walk is done (a batch of independent reads, not one miss per
	 * socket in turn); of a running kernel, now (the socket could be freed and its struct
	 * socket reused by then). */
	uint64_t ino = 0, sock = 0;
	if (!r) {
		if (U->sk_ino.size)
			ino = get(buf, &U->sk_ino);
		else
			sock = get(buf, &U->sk_socket);
		if (sock && w->live) {
			r = read_u64(w, sock + U->inode_from_socket, &ino);
			sock = 0;
		}
		if (!r && !ino && !sock)
			return 0; /* no inode: not accepted yet, not listed */
	}
	PyObject *items[SOCKET_FIELDS] = {NULL};
	if (!r)
		r = unix_items(w, U, addr, buf, ino, items);
	if (!r && w->nside == w->side_cap) {
		Py_ssize_t cap = w->side_cap ? w->side_cap * 2 : 1024;
		struct Side *more = PyMem_Realloc(w->side, (size_t)cap * sizeof(*more));
		if (!more) {
			PyErr_NoMemory();
			r = -1;
		} else {
			w->side = more;
			w->side_cap = cap;
		}
	}
	if (!r) {
		PyObject *rec = new_record((PyTypeObject *)U->cls, items, SOCKET_FIELDS);
		r = rec ? PyList_Append(w->out, rec) : -1;
		Py_XDECREF(rec);
		if (!r)
			w->side[w->nside++] = (struct Side){addr, ino, get(buf, &U->peer), sock};
	} else {
		for (int i = 0; i < SOCKET_FIELDS; i++)
			Py_XDECREF(items[i]);
	}
	if (r == 1)
		w->faults.sockets++;
	return r < 0 ? -1 : 0;
}

PyDoc_STRVAR(walk_unix_doc,
"walk_unix(mem, heads, link, size, least, max_chain, layout, nets, foreign_damage, cls,\n"
"          extra_cls, netids, full, skb_limit, walked, node_lo, node_hi, live)\n"
"    -> (records, bucket_faults, socket_faults, first)\n"
"\n"
"Follow a unix socket table's chains (plain hlists) from heads and decode the sockets of\n"
"the namespaces in nets ({struct net address: inode number}) as drgn_ss.sockets.unix does\n"
"without details (-e): Socket records with a UnixExtra. foreign_damage: a socket of another\n"
"namespace is damage (a namespace's own table), else skipped (the shared table, 5.10).\n"
"live: a running kernel (a node met again from an earlier chain is passed, not a loop).");

static PyObject *walk_unix(PyObject *self, PyObject *args)
{
	PyObject *memspec, *heads, *layout;
	Chaining c;
	Walk w;
	UnixLayout U;
	unsigned long long node_lo, node_hi;
	memset(&w, 0, sizeof(w));
	memset(&U, 0, sizeof(U));
	c.nulls = 0;
	c.marker_base = -1;
	c.first_at = c.stride = 0;
	if (!PyArg_ParseTuple(args, "OOnnnnOOpOOOOnOKKp", &memspec, &heads, &c.link, &c.size, &c.least,
			      &c.max_chain, &layout, &w.nets, &w.foreign_damage, &U.cls, &U.extra_cls, &U.netids,
			      &w.full, &w.skb_limit, &w.walked, &node_lo, &node_hi, &w.live))
		return NULL;
	if (!PyDict_Check(layout) || !PyList_Check(heads) || !is_record_type(U.cls) ||
	    !is_record_type(U.extra_cls) || !PyTuple_Check(U.netids) || PyTuple_GET_SIZE(U.netids) != 3 ||
	    !PyDict_Check(w.nets) || !(PySet_Check(w.walked) || AddressSet_Check(w.walked)) ||
	    w.skb_limit < 1) {
		PyErr_SetString(PyExc_TypeError, "walk_unix: bad arguments");
		return NULL;
	}
	if (c.size > MAX_READ || c.least > c.size || c.link < 0 || c.link + 8 > c.least) {
		PyErr_SetString(PyExc_ValueError, "walk_unix: bad sizes");
		return NULL;
	}
	if (parse_unix_layout(layout, &U) < 0 || parse_field(layout, "net", &w.net) < 0)
		return NULL;
	w.node_lo = node_lo;
	w.node_hi = node_hi;
	w.known = Py_None;
	w.visit = visit_unix;
	w.finish = unix_finish;
	w.unix_layout = &U;
	if (parse_mem(memspec, &w.mem) < 0) {
		mem_release(&w.mem);
		return NULL;
	}
	return walk_heads(&w, heads, &c, Py_None);
}

PyMethodDef fast_walk_methods[] = {
	{"walk_sockets", walk_sockets, METH_VARARGS, walk_sockets_doc},
	{"walk_unix", walk_unix, METH_VARARGS, walk_unix_doc},
	{NULL, NULL, 0, NULL},
};
