"""What differs between kernel versions, answered once per program by the members that exist.

Every kernel-version difference the project knows about is decided here, by
feature detection (does this type have this member?), never by the release
string. Other modules ask :func:`kernel_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from drgn import Object, Program, Type, TypeKind

T = TypeVar("T")


def has_member(type_: Type, name: str) -> bool:
    """Whether a struct or union type has a member (through anonymous members too)."""
    try:
        type_.member(name)
    except LookupError:
        return False
    return True


@dataclass(frozen=True)
class KernelLayout:
    #: The port-only ``inet_hashinfo.listening_hash[32]`` exists (before 5.19):
    #: inet_diag lists listeners from it, so ss's order follows it.
    listening_hash: bool
    #: ``lhash2`` chains are linked through ``icsk_listen_portaddr_node`` (before
    #: 5.19) rather than ``__sk_common.skc_nulls_node``.
    lhash2_portaddr_node: bool
    #: ``net->ipv4.udp_table`` exists: UDP tables are per network namespace (6.2+).
    udp_table_per_netns: bool
    #: ``struct sock`` caches its inode in ``sk_ino`` (6.18+).
    sk_ino: bool
    #: ``struct sock_cgroup_data`` has a ``cgroup`` pointer (5.15+) rather than ``val``.
    sock_cgroup_pointer: bool
    #: ``ip_local_ports.range`` is one u32 holding low | high << 16 (6.3+), not ``int[2]``.
    local_ports_packed: bool
    #: ``icsk_timeout`` holds the pending timer's expiry (before 6.14); later kernels
    #: read ``sk->tcp_retransmit_timer.expires``.
    icsk_timeout: bool
    #: The keepalive timer is ``icsk_keepalive_timer`` (recent) rather than ``sk->sk_timer``.
    icsk_keepalive_timer: bool
    #: The timekeeper lives in ``tk_core`` (before 6.15?) or ``timekeeper_data[0]``.
    tk_core: bool


def _detect(prog: Program) -> KernelLayout:
    hashinfo = prog.type("struct inet_hashinfo")
    icsk = prog.type("struct inet_connection_sock")
    netns_ipv4 = prog.type("struct netns_ipv4")
    cgroup_data = prog.type("struct sock_cgroup_data")
    ports_range = prog.type("struct netns_ipv4").member("ip_local_ports").type.member("range").type
    return KernelLayout(
        listening_hash=has_member(hashinfo, "listening_hash"),
        lhash2_portaddr_node=has_member(icsk, "icsk_listen_portaddr_node"),
        udp_table_per_netns=has_member(netns_ipv4, "udp_table"),
        sk_ino=has_member(prog.type("struct sock"), "sk_ino"),
        sock_cgroup_pointer=has_member(cgroup_data, "cgroup"),
        local_ports_packed=ports_range.unqualified().kind != TypeKind.ARRAY,
        icsk_timeout=has_member(icsk, "icsk_timeout"),
        icsk_keepalive_timer=has_member(icsk, "icsk_keepalive_timer"),
        tk_core=_has_object(prog, "tk_core"),
    )


def _has_object(prog: Program, name: str) -> bool:
    try:
        prog.object(name)
    except LookupError:
        return False
    return True


def prog_cached(prog: Program, key: str, make: Callable[[Program], T]) -> T:
    """``make(prog)``, computed once per Program and kept in ``prog.cache``."""
    try:
        value: T = prog.cache["drgn_ss." + key]
    except KeyError:
        value = prog.cache["drgn_ss." + key] = make(prog)
    return value


def kernel_layout(prog: Program) -> KernelLayout:
    """The layout of ``prog``'s kernel, detected on first use."""
    return prog_cached(prog, "layout", _detect)


def timekeeper(prog: Program) -> Object:
    """
    Get the kernel's timekeeper: ``tk_core.timekeeper`` or ``timekeeper_data[0].timekeeper``.

    :return: ``struct timekeeper``
    """
    if kernel_layout(prog).tk_core:
        return prog["tk_core"].timekeeper
    return prog["timekeeper_data"][0].timekeeper


def initial_jiffies(hz: int) -> int:
    """INITIAL_JIFFIES: jiffies at boot, (u32)(-300 * HZ), so they wrap 5 minutes in."""
    return (-300 * hz) & 0xFFFFFFFF


def jiffies(prog: Program) -> int:
    """The kernel's jiffies now (on a dump: at the time of the dump)."""
    return int(prog["jiffies_64"].value_())


HZ_CANDIDATES = (100, 250, 300, 1000)


def kernel_hz(prog: Program) -> int:
    """
    The kernel's HZ (CONFIG_HZ), which DWARF does not record.

    jiffies start at INITIAL_JIFFIES = (u32)(-300 * HZ) and advance HZ times a second,
    as the monotonic clock advances in nanoseconds: the candidate that best explains
    jiffies_64 from the timekeeper's monotonic time is the one.
    """
    return prog_cached(prog, "hz", _detect_hz)


def _detect_hz(prog: Program) -> int:
    mono_ns = int(timekeeper(prog).tkr_mono.base.value_())
    now = jiffies(prog)

    def error(hz: int) -> int:
        return abs(now - initial_jiffies(hz) - hz * mono_ns // 1_000_000_000)

    return min(HZ_CANDIDATES, key=error)


def jiffies_delta_to_msecs(prog: Program, delta: int) -> int:
    """As the kernel's jiffies_delta_to_msecs(): a negative delta is 0."""
    return max(delta, 0) * 1000 // kernel_hz(prog)
