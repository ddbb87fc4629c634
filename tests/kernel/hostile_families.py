"""Damage to the other families' walks and to the thread lists -T reads (see hostile.py).

Each case patches the intact dump at the real place of a real object, found with drgn's
own helpers: a unix hash chain that loops, a unix name whose length is garbage, a unix
receive queue that loops, the packet socket list looping, a process's thread list looping.
Each is read with :data:`COMMANDS` and judged by :func:`hostile.check_run`: no traceback,
no hang, no socket twice, no phantom, exit 3 with a warning where something was cut.
"""

from __future__ import annotations

import drgn
from drgn.helpers.linux.list import hlist_for_each_entry, list_for_each_entry
from drgn_ss.tables.unix import UNIX_HASH_SIZE

from tests.kernel.hostile import Command, Damage, Kernel, NotHere, Patch, member, u32, u64

__all__ = ["COMMANDS", "DAMAGES"]

#: How the damaged copies are read: the families' listings in JSON (judged socket by
#: socket against the intact dump), their text with -e, and -T's thread walk.
COMMANDS: tuple[Command, ...] = (
    (("--json", "-xanp"), False),
    (("-H", "-xanpe"), False),
    (("--json", "-0anp"), False),
    (("--json", "-f", "netlink", "-an"), False),
    (("--json", "-tlnT"), False),
)


def _unix_chains(k: Kernel) -> list[list[drgn.Object]]:
    """init_net's non-empty unix hash chains (its own table, 5.19+; else the global one)."""
    try:
        buckets = k.init_net.unx.table.buckets
    except AttributeError:
        buckets = k.prog["unix_socket_table"]
    out = []
    for i in range(UNIX_HASH_SIZE):
        chain = list(hlist_for_each_entry("struct sock", buckets[i].address_of_(), "__sk_common.skc_node"))
        if chain:
            out.append(chain)
    return out


def _unix(k: Kernel, want: str) -> drgn.Object:
    """A unix socket of init_net's table: bound (``name``), or connected with unread data (``queued``)."""
    for chain in _unix_chains(k):
        for sk in chain:
            u = drgn.cast("struct unix_sock *", sk)
            if sk.member_("__sk_common").skc_net.net != k.init_net.address_of_():
                continue
            if want == "name" and u.addr:
                return sk
            established = sk.member_("__sk_common").skc_state == 1  # a listener's queue is its backlog
            # seqpacket: its queue is walked on every kernel (a stream socket's unread bytes are
            # unix_sock.inq_len from 6.17)
            if want == "queued" and sk.sk_type == 5 and established and sk.sk_receive_queue.qlen > 0:
                return sk
    raise NotHere(f"no unix socket of init_net for {want}")


def _unix_chain_loop(k: Kernel) -> list[Patch]:
    # The last socket of a chain links back to the chain's first: a loop.
    chain = max(_unix_chains(k), key=len)
    return [(member(chain[-1], "__sk_common.skc_node.next"), u64(member(chain[0], "__sk_common.skc_node")))]


def _unix_name_length(k: Kernel) -> list[Patch]:
    u = drgn.cast("struct unix_sock *", _unix(k, "name"))
    return [(member(u.addr, "len"), u32(0xFFFF_FFF0))]


def _unix_queue_loop(k: Kernel) -> list[Patch]:
    sk = _unix(k, "queued")
    skb = sk.sk_receive_queue.next
    return [(member(skb, "next"), u64(int(skb.value_())))]


def _packet_list_loop(k: Kernel) -> list[Patch]:
    socks = list(hlist_for_each_entry("struct sock", k.init_net.packet.sklist.address_of_(),
                                      "__sk_common.skc_node"))
    if len(socks) < 2:
        raise NotHere("fewer than two packet sockets in init_net")
    return [(member(socks[-1], "__sk_common.skc_node.next"), u64(member(socks[0], "__sk_common.skc_node")))]


def _thread_list_loop(k: Kernel) -> list[Patch]:
    # The threaded process's last thread links back to its second: a thread list that never
    # comes home to signal->thread_head.
    task = next((t for t in k.tasks() if t.comm.string_() == b"ss-threads"), None)
    if task is None:
        raise NotHere("no ss-threads process")
    threads = list(list_for_each_entry("struct task_struct", task.signal.thread_head.address_of_(),
                                       "thread_node"))
    if len(threads) < 3:
        raise NotHere("ss-threads has fewer than three threads")
    return [(member(threads[-1], "thread_node.next"), u64(member(threads[1], "thread_node")))]


DAMAGES: tuple[Damage, ...] = (
    Damage("unix-chain-loop", _unix_chain_loop, COMMANDS[:2]),
    Damage("unix-name-length", _unix_name_length, COMMANDS[:2]),
    Damage("unix-receive-queue-loop", _unix_queue_loop, COMMANDS[:2]),
    Damage("packet-list-loop", _packet_list_loop, COMMANDS[2:3]),
    Damage("thread-list-loop", _thread_list_loop, COMMANDS[4:]),
)
