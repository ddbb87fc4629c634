"""Decode vsock sockets (``struct vsock_sock``, of the vsock module) into
:class:`~drgn_ss.sockets.record.Socket` records with the values vsock_diag reports
(net/vmw_vsock/diag.c): ss's ``--vsock``.

vsock keeps every socket in two global tables of lists, ``vsock_bind_table`` (by port,
unbound ones in the last list) and ``vsock_connected_table``; vsock_diag lists the first,
then the sockets of the second that are in no list of the first. The module's types come
from its debug info where drgn has it, else from its BTF in memory; where it is not
loaded there are no vsock sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.fields import Unpacker
from drgn_ss.kernel.memory import list_nodes
from drgn_ss.kernel.modules import kernel_module, module_source
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, object_limit
from drgn_ss.sockets.record import Socket

__all__ = ["AF_VSOCK", "NOT_VSOCK", "VMADDR_ANY", "VSOCK_HASH_SIZE", "VsockExtra", "VsockLayout",
           "vsock_netid", "vsock_sockets"]

AF_VSOCK = 40
#: net/vmw_vsock/af_vsock.c: the bind table has one more list, for unbound sockets.
VSOCK_HASH_SIZE = 251
#: VMADDR_CID_ANY and VMADDR_PORT_ANY: ss shows them as *.
VMADDR_ANY = 0xFFFFFFFF
NOT_VSOCK = "a damaged socket (not a vsock socket)"
SOCK_STREAM, SOCK_DGRAM = 1, 2


def vsock_netid(sock_type: int) -> str:
    """ss's netid for a vsock socket type (vsock_netid_name())."""
    return {SOCK_STREAM: "v_str", SOCK_DGRAM: "v_dgr"}.get(sock_type, "???")


class VsockExtra(NamedTuple):
    """What only a vsock socket has: its type, and its and its peer's context ids."""

    type: int
    src_cid: int
    dst_cid: int


class VsockLayout:
    """Where :func:`vsock_sockets` reads, resolved once per kernel build (the module's types too)."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        f = facts.field
        S, V, c = "struct sock", "struct vsock_sock", "__sk_common."
        module = module_source(prog, "vsock")
        self.common = Unpacker({
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"), "state": f(S, c + "skc_state"),
            "cookie": f(S, c + "skc_cookie.counter"), "refcnt": f(S, c + "skc_refcnt.refs.counter"),
            "type": f(S, "sk_type"), "shutdown": f(S, "sk_shutdown"), "sk_socket": f(S, "sk_socket"),
            "uid": f(S, "sk_uid.val")})
        self.addresses = Unpacker({
            "src_cid": f(V, "local_addr.svm_cid", module), "src_port": f(V, "local_addr.svm_port", module),
            "dst_cid": f(V, "remote_addr.svm_cid", module), "dst_port": f(V, "remote_addr.svm_port", module),
            "bound_next": f(V, "bound_table.next", module)})
        self.bound = facts.offset(V, "bound_table", module)
        self.connected = facts.offset(V, "connected_table", module)
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.size = max(self.common.size, self.addresses.size)


def vsock_layout(prog: Program) -> VsockLayout:
    """``prog``'s :class:`VsockLayout`, made once per program."""
    return prog_cached(prog, "vsock_layout", VsockLayout)


def _decode(prog: Program, L: VsockLayout, addr: int, inums: dict[int, int]) -> tuple[int, Socket] | None:
    """A socket as sk_diag_fill() reports it, with its namespace; None if of one not listed."""
    mem = kernel_memory(prog)
    buf = mem.read(addr, L.size)
    net, family, state, cookie, refcnt, sock_type, shutdown, sk_socket, uid = L.common.unpack(buf)
    if net not in inums or not refcnt:
        return None
    if family != AF_VSOCK:
        raise FaultError(NOT_VSOCK, addr)
    src_cid, src_port, dst_cid, dst_port, _next = L.addresses.unpack(buf)
    ino = mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
    netid = {SOCK_STREAM: "v_str", SOCK_DGRAM: "v_dgr"}.get(sock_type, "v_seq")  # the table, for selection
    return net, Socket(netid, AF_VSOCK, state, b"", src_port, b"", dst_port, 0, None, 0, 0, ino, uid, cookie,
                       inums[net], shutdown, None, "full", addr, 0, 0, 0, sk_socket,
                       VsockExtra(sock_type, src_cid, dst_cid))


def vsock_sockets(prog: Program, nets: int | Sequence[int], errors: WalkErrors | None = None) -> list[Socket]:
    """
    The vsock sockets of a namespace, or of several (each one's in turn), in vsock_diag's
    order; none if the vsock module is not loaded.

    :raises LookupError: if it is, but its types cannot be had (no debug info, no BTF)
    """
    module = kernel_module(prog, "vsock")
    if module is None:
        return []
    mem = kernel_memory(prog)
    L = vsock_layout(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + L.ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    found: dict[int, list[Socket]] = {net: [] for net in inums}
    bind, connected = module.variable("vsock_bind_table"), module.variable("vsock_connected_table")
    if not bind or not connected:
        tolerate(errors, "tables", FaultError("the vsock module's tables cannot be found", module.address))
        return []
    limit = object_limit(prog, "struct sock")
    tables = ((bind, VSOCK_HASH_SIZE + 1, L.bound), (connected, VSOCK_HASH_SIZE, L.connected))
    for table, count, link in tables:
        for bucket in range(count):
            try:
                for node in list_nodes(mem, table + 16 * bucket, limit, "a vsock table's list"):
                    addr = node - link
                    if link == L.connected and mem.read_u64(addr + L.bound) != addr + L.bound:
                        continue  # in the bind table too: listed there
                    decoded = _decode(prog, L, addr, inums)
                    if decoded is not None:
                        found[decoded[0]].append(decoded[1])
            except FaultError as e:
                tolerate(errors, "sockets", e)
    return [s for net in inums for s in found[net]]
