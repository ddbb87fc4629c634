"""Sockets the kernel holds for itself (``sock_create_kern()``: no process has a file for
them), and which subsystem uses each: a UDP tunnel (vxlan, geneve, fou, wireguard...), the
NFS server or the sunrpc client, NVMe/TCP, iSCSI, ceph, RDS...

Found from the socket's own fields, never from its port: a UDP tunnel socket's
``udp_sock.encap_rcv``, else the ``sk_data_ready`` or ``sk_state_change`` callback the
subsystem installed, named by the symbol at that address (the loaded modules' symbol
tables, where these subsystems live in Debian's kernels; drgn's symbols for the rest), and
what ``sk_user_data`` points to for the detail (the sunrpc service's name, a tunnel's
devices).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.memory import Memory, read_c_string
from drgn_ss.kernel.modules import kernel_modules, module_source
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import Socket

__all__ = ["ENCAP_USERS", "CALLBACK_USERS", "KernelUser", "kernel_users"]


class KernelUser(NamedTuple):
    """A subsystem of the kernel that uses a socket no process holds."""

    #: "vxlan", "nfsd", "sunrpc"...; "?" where no callback is known.
    name: str
    #: "dev=vx0", "client"...; "" if none.
    detail: str
    #: The callback it was known by: "encap_rcv=vxlan_rcv", "data_ready=svc_data_ready"...
    callback: str


#: ``udp_sock.encap_rcv`` -> the UDP tunnel (include/linux/udp.h; each driver's setup_udp_tunnel_sock()).
ENCAP_USERS = {
    "vxlan_rcv": "vxlan", "geneve_udp_encap_recv": "geneve", "fou_udp_recv": "fou", "gue_udp_recv": "fou",
    "wg_receive": "wireguard", "l2tp_udp_encap_recv": "l2tp", "gtp_encap_recv": "gtp",
    "bareudp_udp_encap_recv": "bareudp", "xfrm4_udp_encap_rcv": "xfrm", "xfrm6_udp_encap_rcv": "xfrm",
    "rxrpc_encap_rcv": "rxrpc", "rxrpc_input_packet": "rxrpc", "tipc_udp_recv": "tipc",
    "sctp_udp_rcv": "sctp", "amt_rcv": "amt", "ovpn_udp_encap_recv": "ovpn", "pfcp_encap_recv": "pfcp",
}

#: ``sk_data_ready`` or ``sk_state_change`` -> (subsystem, detail); "" for sunrpc's server:
#: named after its service (``svc_serv.sv_name``: nfsd, lockd...).
CALLBACK_USERS = {
    "svc_data_ready": ("", ""), "svc_tcp_listen_data_ready": ("", ""), "svc_udp_data_ready": ("", ""),
    "svc_tcp_data_ready": ("", ""), "svc_tcp_state_change": ("", ""),
    "xs_data_ready": ("sunrpc", "client"), "xs_tcp_data_ready": ("sunrpc", "client"),
    "xs_udp_data_ready": ("sunrpc", "client"), "xs_local_data_ready": ("sunrpc", "client"),
    "xs_tcp_state_change": ("sunrpc", "client"),
    "nvme_tcp_data_ready": ("nvme-tcp", ""), "nvme_tcp_state_change": ("nvme-tcp", ""),
    "nvmet_tcp_data_ready": ("nvmet-tcp", ""), "nvmet_tcp_listen_data_ready": ("nvmet-tcp", "listen"),
    "iscsi_sw_tcp_data_ready": ("iscsi", ""), "iscsi_sw_tcp_state_change": ("iscsi", ""),
    "iscsi_target_sk_data_ready": ("iscsi-target", ""),
    "ceph_sock_data_ready": ("ceph", ""), "ceph_sock_state_change": ("ceph", ""),
    "rds_tcp_data_ready": ("rds", ""), "rds_tcp_listen_data_ready": ("rds", "listen"),
    "rds_tcp_state_change": ("rds", ""),
    "o2net_data_ready": ("ocfs2", ""), "o2net_listen_data_ready": ("ocfs2", "listen"),
    "lowcomms_data_ready": ("dlm", ""), "lowcomms_listen_data_ready": ("dlm", "listen"),
    "lowcomms_state_change": ("dlm", ""), "espintcp_data_ready": ("espintcp", ""),
    "siw_qp_llp_data_ready": ("siw", ""), "smc_clcsock_data_ready": ("smc", "listen"),
}

#: The tunnels whose sk_user_data lists their devices: (module, its socket struct, the
#: struct on its vni_list, that struct's member naming the device's private struct).
_TUNNEL_DEVICES = {
    "vxlan": ("vxlan", "struct vxlan_sock", "struct vxlan_dev_node", "vxlan", "struct vxlan_dev"),
    "geneve": ("geneve", "struct geneve_sock", "struct geneve_dev_node", "geneve", "struct geneve_dev"),
}
#: VNI_HASH_SIZE (drivers/net/vxlan, geneve): the heads of a tunnel socket's vni_list.
_VNI_HASH_SIZE = 1 << 10
#: More devices on one tunnel socket than are named.
_MAX_DEVICES = 8
#: sk_user_data's low bits are flags (SK_USER_DATA_NOCOPY... 5.19+), not the pointer.
_USER_DATA_FLAGS = 7


def kernel_users(prog: Program, socks: Iterable[Socket], errors: WalkErrors | None = None
                 ) -> dict[int, KernelUser]:
    """
    The kernel users of the sockets in ``socks`` (those no process holds): of a full socket
    the kernel made for itself (a ``struct socket`` with no file), who uses it, ``?`` if
    nobody known; of one with a file, only a known user (rpc.nfsd opens nfsd's listeners
    and hands them to the kernel, which keeps the file; a socket in flight in a unix
    message has a file too, and no kernel user). By ``struct sock`` address; a socket that
    cannot be read is counted in ``errors`` as a socket.
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    S = "struct sock"
    o_file = facts.offset("struct socket", "file")
    o_ready, o_change = facts.offset(S, "sk_data_ready"), facts.offset(S, "sk_state_change")
    o_user = facts.offset(S, "sk_user_data")
    o_encap: int | None = None
    names = _Symbols(prog)
    out: dict[int, KernelUser] = {}
    for s in socks:
        if s.kind != "full" or not s.socket:
            continue
        try:
            has_file = bool(mem.read_u64(s.socket + o_file))
            if s.proto == "udp":
                o_encap = facts.offset("struct udp_sock", "encap_rcv") if o_encap is None else o_encap
                encap = names(mem.read_u64(s.address + o_encap))
                if encap in ENCAP_USERS:
                    user_data = mem.read_u64(s.address + o_user) & ~_USER_DATA_FLAGS
                    # Named before its devices are read: a fault there keeps the name (and is counted).
                    user = out[s.address] = KernelUser(ENCAP_USERS[encap], "", f"encap_rcv={encap}")
                    out[s.address] = user._replace(detail=_tunnel_detail(prog, user.name, user_data))
                    continue
            user = _callback_user(prog, mem, names, errors, mem.read_u64(s.address + o_ready),
                                  mem.read_u64(s.address + o_change),
                                  mem.read_u64(s.address + o_user) & ~_USER_DATA_FLAGS)
            if user.name != "?" or not has_file:
                out[s.address] = user
        except FaultError as e:
            tolerate(errors, "sockets", e)
    return out


def _callback_user(prog: Program, mem: Memory, names: _Symbols, errors: WalkErrors | None,
                   data_ready: int, state_change: int, user_data: int) -> KernelUser:
    """Who installed a kernel socket's callbacks; ``?`` and the data_ready symbol if nobody known."""
    for what, address in (("data_ready", data_ready), ("state_change", state_change)):
        symbol = names(address)
        if symbol in CALLBACK_USERS:
            name, detail = CALLBACK_USERS[symbol]
            if not name:
                name, detail = _sunrpc_service(prog, mem, user_data, errors), ""
            return KernelUser(name, detail, f"{what}={symbol}")
    symbol = names(data_ready) or f"{data_ready:#x}"
    return KernelUser("?", f"data_ready={symbol}", f"data_ready={symbol}")


def _sunrpc_service(prog: Program, mem: Memory, svsk: int, errors: WalkErrors | None) -> str:
    """
    The name of the sunrpc service (``svc_serv.sv_name``: "nfsd", "lockd"...) a server
    socket's ``struct svc_sock`` (its sk_user_data) belongs to; "sunrpc" if it cannot be told:
    without sunrpc's types, or where it cannot be read (counted in ``errors`` as a socket).
    """
    facts = kernel_facts(prog)
    source = module_source(prog, "sunrpc")
    try:
        xprt = facts.offset("struct svc_sock", "sk_xprt", source)
        server = facts.offset("struct svc_xprt", "xpt_server", source)
        name_at = facts.offset("struct svc_serv", "sv_name", source)
        serv = mem.read_u64(svsk + xprt + server)
        name = read_c_string(mem, mem.read_u64(serv + name_at), 32).decode("ascii", "replace")
    except LookupError:
        return "sunrpc"
    except FaultError as e:
        tolerate(errors, "sockets", e)
        return "sunrpc"
    return name if name.replace("-", "").replace("_", "").isalnum() else "sunrpc"


def _tunnel_detail(prog: Program, tunnel: str, user_data: int) -> str:
    """``dev=NAME[+NAME...]``: the devices a vxlan or geneve socket serves; "" for another tunnel."""
    if tunnel not in _TUNNEL_DEVICES or not user_data:
        return ""
    module, sock_type, node_type, member, dev_type = _TUNNEL_DEVICES[tunnel]
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    source = module_source(prog, module)
    try:
        heads = user_data + facts.offset(sock_type, "vni_list", source)
        o_hlist = facts.offset(node_type, "hlist", source)
        o_priv = facts.offset(node_type, member, source)
        o_dev = facts.offset(dev_type, "dev", source)
        o_name = facts.offset("struct net_device", "name")
    except LookupError:
        return ""
    names: list[str] = []
    seen: set[int] = set()
    for head in memoryview(mem.read(heads, 8 * _VNI_HASH_SIZE)).cast("Q"):
        node = head
        while node and len(names) < _MAX_DEVICES:
            if node in seen:
                raise FaultError(f"{tunnel} socket's device list loops", node)
            seen.add(node)
            dev = mem.read_u64(mem.read_u64(node - o_hlist + o_priv) + o_dev)
            names.append(read_c_string(mem, dev + o_name, 16).decode(errors="surrogateescape"))
            node = mem.read_u64(node)
    return "dev=" + "+".join(dict.fromkeys(names)) if names else ""


def _image_callbacks(prog: Program) -> dict[int, str]:
    """
    The kernel image's callbacks a kernel socket may keep, by address: found by name, so
    without debug info too (kallsyms): a kernel netlink socket's ``netlink_data_ready``,
    the default ``sock_def_readable``.
    """
    facts = kernel_facts(prog)
    out: dict[int, str] = {}
    with contextlib.suppress(LookupError):
        out[facts.symbol("netlink_data_ready")] = "netlink_data_ready"
    with contextlib.suppress(LookupError):
        out[facts.symbol("sock_def_readable")] = "sock_def_readable"
    return out


class _Symbols:
    """
    Function addresses to names: the loaded modules' symbols (read once, the first time an
    address is asked), then drgn's (vmlinux's, with debug info); None if neither knows it.
    """

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.by_address: dict[int, str] | None = None

    def __call__(self, address: int) -> str | None:
        if not address:
            return None
        if self.by_address is None:
            self.by_address = _image_callbacks(self.prog)
            try:
                modules = list(kernel_modules(self.prog).values())
            except FaultError:
                modules = []
            for module in modules:
                try:
                    self.by_address.update((a, n) for n, a in module.symbols().items())
                except FaultError:
                    continue
        name = self.by_address.get(address)
        if name is None:
            try:
                symbol = self.prog.symbol(address)
            except (LookupError, ValueError):
                return None
            name = self.by_address[address] = symbol.name if symbol.address == address else ""
        return name or None
