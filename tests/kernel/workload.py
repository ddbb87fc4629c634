"""The guest side of the kernel matrix: open sockets of every kind, describe them, READY, wait.

Run inside a vmtests guest (``python tests/kernel/workload.py``), by the live
tests and as the SETUP of the dump and ``drgn --qemu`` modes. It opens:

- TCP listeners on IPv4, IPv6, a dual-stack and a v6only wildcard, and one bound
  to a device (``lo``); well-known ports (ssh, http, ...) so names resolve;
- established pairs over IPv4, IPv6 and IPv4-mapped IPv6, one with unread data
  (Recv-Q) and a full peer window (Send-Q), one not yet accepted;
- TIME-WAIT, FIN-WAIT-2 and CLOSE-WAIT sockets;
- UDP sockets bound and connected, IPv4 and IPv6, one with a queued datagram;
- a listener shared by two processes (fork), a SO_REUSEPORT group across two
  processes, and a listener in a second network namespace (never listed);
- unix (:func:`open_unix`), raw (:func:`open_raw`), packet (:func:`open_packet`),
  netlink (:func:`open_netlink`), MPTCP (:func:`open_mptcp`), SCTP (:func:`open_sctp`) and
  vsock (:func:`open_vsock`) sockets, each held by two processes, and some in the other namespaces.

Then it runs ``ss -H`` with each of :data:`OPTION_SETS`, scans /proc for socket
owners, prints one ``WORKLOAD {json}`` line and ``READY``, and keeps everything
open until it is killed (the guest powers off).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

#: ss options the tests compare, each run as ``ss -H OPTIONS``.
OPTION_SETS = (
    "-nlpt",
    "-tanp",
    "-uanp",
    "-tan state established",
    "-lnu6",
    "-tlne",
    "-tlp",
    "-tap",
    "-uap",
    "-tanpe",
    "-uanpe",
    "-ta exclude established",
    "-tn state connected",
    "-tan state bucket",
    "-4tan",
    "-6tan",
    "-tano",
    "-tunl",
    "-tuna",
    "-tun",
    "-ul",
    "-tanm",
    "-uanm",
    "-tlnm",
    "-tani",
    "-tlni",
    "-tanmi",
    "-uanmi",
    "-tanoi",
    # Every family at once, as ss lists them without a family option; then each family's own
    # text (-e, -m), ss's defaults for a family (its states), queries.
    "-anp",
    "-xanp",
    "-0anp",
    "-xane",
    "-xanm",
    "-x",
    "-A unix_dgram,unix_seqpacket -anp",
    "-wane",
    "-w",
    "-0ane",
    "-f netlink -ane",
    "-Mlp",
    "-Sane",
    "-S",
    "--vsock -a",
    "-tlr",
    "-tan --cgroup",
    "-tan --tos",
    "-uan --tos --inet-sockopt",
    "-wan --tos --inet-sockopt",
    "-tanOem --inet-sockopt",
    "-0aneO",
    "-0anb",
    "-0anbO",
    "-tlnT",
    "-tlnpT sport = :7007",
    # The families issue's own sets, as it names them.
    "-an",
    "-wanp",
    "-f netlink -an",
    "-Manp",
    "-Sanp",
    "--vsock -an",
)

#: ss filter expressions the tests compare (with the options before them), each run as
#: ``ss -H OPTIONS EXPRESSION`` (the expression split at spaces, as a shell would).
FILTER_SETS = (
    "-tan sport = :22",
    "-tan dport == :22",
    "-tan sport != :22",
    "-tan sport >= :7000 and sport <= :7010",
    "-tan dport gt :1024",
    "-tan sport lt 1024",
    "-tan sport eq 0x16",
    "-tan dport = :ssh",
    "-tan src 127.0.0.1",
    "-tan dst 127.0.0.0/8",
    "-tan dst 127.0.0.0/255.0.0.0",
    "-tan src [::1]",
    "-tan dst [::ffff:127.0.0.1]",
    "-tan src [::1]:443 or dst [::1]:443",
    "-tan src *:8080",
    "-tan not src 127.0.0.1",
    "-tan ( sport = :22 or sport = :443 ) and not dst 127.0.0.1",
    "-tan sport = :22 or sport = :7001 and dport = :0",
    "-tan ! sport = :22 && ! sport = :80 || dport = :22",
    "-tan dst 0.0.0.0/0",
    "-tan src inet6:::/0",
    "-tan dev = lo",
    "-tan state established sport = :7001 or dport = :7001",
    "-uan dport = :53",
    "-uan src [::1]",
    "-6tan src ::/0",
    "-xan src /tmp/drgn-ss-unix/*",
    "-xa src unix:@DRGN-SS*",
    "-xan dst *",
    "-xan not src *.sock",
    "-0an dev = lo",
    "-wan dev = lo",
    "-wan sport = :253",
    "-San sport = :7020",
    "-Man dst 127.0.0.1",
)

#: ss options compared in each of the extra network namespaces (NETNS_NAMES).
#: The sets compared in every mode. The others compare how drgn-ss prints what it read,
#: the same whatever reads the kernel: they run where the matrix reads a dump in full
#: (the elf mode) and a filtered one (crash), and outside the matrix (no DRGN_SS_MODE); the
#: live, btf, qemu, kdump and crash0 modes, whose readers differ, run these.
EVERY_MODE_SETS = frozenset({
    "-nlpt", "-tanp", "-uanp", "-tan state established", "-tlne", "-tanpe", "-uanpe", "-tano",
    "-tanmi", "-uanmi", "-an", "-anp", "-xanp", "-xane", "-wanp", "-0anp", "-f netlink -an", "-Manp",
    "-Sanp", "--vsock -an", "-A unix_dgram,unix_seqpacket -anp", "-tan --tos", "-tlnpT sport = :7007",
    "-tan sport = :22", "-tan src [::1]:443 or dst [::1]:443", "-tan dev = lo",
    "-xan src /tmp/drgn-ss-unix/*",
})
#: The matrix modes that compare every set.
EVERY_SET_MODES = ("elf", "crash")

NETNS_OPTION_SETS = ("-tanp", "-uanp", "-xanp", "-0anp")
#: Processes that each live in a network namespace of their own, with listeners, an
#: established pair and a UDP socket on the same ports (9000, 9001) in each; the last one's
#: namespace is made with net.ipv4.tcp_child_ehash_entries (6.1+) and
#: net.ipv4.udp_child_hash_entries (6.2+) set, so that it has tables of its own.
NETNS_NAMES = ("ns-a", "ns-b", "ns-private")
CHILD_TABLE_SYSCTLS = ("/proc/sys/net/ipv4/tcp_child_ehash_entries",
                       "/proc/sys/net/ipv4/udp_child_hash_entries")
CLONE_NEWNET = 0x40000000

PR_SET_NAME = 15

#: A hostile command name (15 bytes at most): a newline, an escape sequence, a double quote,
#: a two-byte UTF-8 character and a ")" (where ss's fscanf("%*d (%[^)])") stops).
HOSTILE_NAME = b'a\nb\x1b[31mc"\xc3\xa9)e'
#: What ss shows of it: ss 7.0+ escapes (controls ".", bytes past ASCII "?"); ss before 7.0
#: (Debian 12's 6.1) prints it raw, breaking its line, so the expected outputs are rewritten
#: to ss 7.0's form (ss_outputs).
HOSTILE_RAW = HOSTILE_NAME.split(b")")[0].decode()
HOSTILE_SHOWN = 'a.b.[31mc"??'
HOSTILE_PORT = 7006
#: The pid of the process of that name, once open_everything() has started it.
HOSTILE_PID: list[int] = []
#: What open_namespaces() made, once open_everything() has run.
NAMESPACES: dict[str, Any] = {}


def set_name(name: str | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name if isinstance(name, bytes) else name.encode(), 0, 0, 0)


def listener(family: int, addr: str, port: int, *, v6only: bool | None = None,
             device: bytes | None = None, reuseport: bool = False, rcvbuf: int | None = None,
             backlog: int = 16) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    if device is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((addr, port))
    s.listen(backlog)
    return s


def connect(family: int, addr: str, port: int) -> socket.socket:
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect((addr, port))
    return c


def child(name: str | bytes, keep: list[socket.socket], make: Any = None) -> int:
    """Fork a process named ``name`` that holds ``keep`` (and what ``make`` opens) until killed."""
    pid = os.fork()
    if pid:
        return pid
    try:
        # Not the workload's stdout: a reader waiting for READY sees EOF if the workload dies.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        set_name(name)
        keep_fds = {s.fileno() for s in keep}
        for fd in range(3, 1024):
            if fd not in keep_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        held = list(keep)
        if make is not None:
            held.append(make())
        signal.pause()
    finally:
        os._exit(0)


def threaded(sock: socket.socket) -> socket.socket:
    """Start two threads that wait for ever, the second named ss-worker; ``sock`` is theirs too."""
    import threading

    def wait(name: bytes | None) -> None:
        if name:
            set_name(name)
        threading.Event().wait()

    for name in (None, b"ss-worker"):
        threading.Thread(target=wait, args=(name,), daemon=True).start()
    time.sleep(0.1)  # named before ss looks
    return sock


def in_cgroup(path: str, make: Any) -> Any:
    """Move this process into the cgroup at ``path``, then ``make()`` (its sockets are that cgroup's)."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write("0")
    return make()


def udp_bound(family: int, addr: str, port: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, port))
    return s


def open_listeners() -> list[socket.socket]:
    """TCP listeners on loopback, IPv4 and IPv6, on ports the kernel picks."""
    return [listener(socket.AF_INET, "127.0.0.1", 0), listener(socket.AF_INET6, "::1", 0)]


def describe(listeners: list[socket.socket]) -> dict[str, Any]:
    """What the kernel should show of these listeners: the JSON the tests read."""
    return {
        "release": os.uname().release,
        "pid": os.getpid(),
        "listeners": [
            {"family": "inet6" if s.family == socket.AF_INET6 else "inet",
             "addr": s.getsockname()[0], "port": s.getsockname()[1],
             "ino": os.fstat(s.fileno()).st_ino}
            for s in listeners
        ],
    }


def time_wait(ssh: socket.socket) -> float:
    """
    A TIME-WAIT socket: the client closes first, then the server. It lives 60 s
    (TCP_TIMEWAIT_LEN), so it is made last, just before ss's snapshots: under TCG the rest of
    the workload takes tens of seconds. Returns when it was made (CLOCK_BOOTTIME): on a
    running kernel, the tests stop expecting it once it may be gone (tests/kernel/test_ss.py).
    """
    c = connect(socket.AF_INET, "127.0.0.1", 22)
    a, _ = ssh.accept()
    c.close()
    made = time.clock_gettime(time.CLOCK_BOOTTIME)
    time.sleep(0.1)
    a.close()
    # The client is in FIN-WAIT-2 until the server's FIN arrives (under TCG, a while): the
    # snapshots must all see the TIME-WAIT socket.
    for _ in range(100):
        if subprocess.run(["ss", "-Htn", "state", "time-wait", "dport = :22"], capture_output=True,
                          text=True, check=True).stdout.strip():
            break
        time.sleep(0.1)
    return made


#: Where the workload binds its unix path names.
UNIX_DIR = "/tmp/drgn-ss-unix"


def open_unix() -> list[socket.socket]:
    """
    Unix sockets of every type and state ss shows: a path listener with an accepted
    connection (unread bytes both ways, one side shut down for writing) and a connection
    waiting in its accept queue; an abstract listener; a stream and a seqpacket socketpair
    with unread data; datagram sockets bound to a path, to an abstract name (with a NUL
    inside), autobound, unbound, and one connected with two datagrams queued.
    """
    os.makedirs(UNIX_DIR, exist_ok=True)
    ux = socket.AF_UNIX
    held: list[socket.socket] = []

    def make(kind: int = socket.SOCK_STREAM, bind: str | None = None) -> socket.socket:
        s = socket.socket(ux, kind)
        if bind is not None:
            s.bind(bind)
        held.append(s)
        return s

    srv = make(bind=f"{UNIX_DIR}/srv.sock")
    srv.listen(8)
    client = make()
    client.connect(f"{UNIX_DIR}/srv.sock")
    served, _ = srv.accept()
    held.append(served)
    make().connect(f"{UNIX_DIR}/srv.sock")  # waits in the accept queue
    client.send(b"c" * 1000)
    client.send(b"d" * 24)
    served.send(b"s" * 3)
    client.shutdown(socket.SHUT_WR)
    make(bind="\0DRGN-SS-abstract").listen(3)
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        a, b = socket.socketpair(ux, kind)
        held += [a, b]
        a.send(b"p" * 77)
        a.send(b"q" * 5)
    seq = make(socket.SOCK_SEQPACKET, "\0DRGN-SS-seq")
    seq.listen(2)
    dgram = make(socket.SOCK_DGRAM, f"{UNIX_DIR}/log.sock")
    make(socket.SOCK_DGRAM, "\0DRGN-SS-dg\0ram")
    make(socket.SOCK_DGRAM, "")  # autobind: @ and five hex digits
    make(socket.SOCK_DGRAM)
    sender = make(socket.SOCK_DGRAM)
    sender.connect(f"{UNIX_DIR}/log.sock")
    sender.send(b"m" * 11)
    sender.send(b"n" * 12)
    assert dgram.fileno() >= 0
    return held


#: A dummy interface, down: a packet socket bound to it receives nothing (its Recv-Q stays).
QUIET_DEVICE = "drgnss0"
SOL_PACKET, PACKET_VERSION, PACKET_RX_RING, PACKET_FANOUT, TPACKET_V3 = 263, 10, 5, 18, 2


def set_inet_options(dns: socket.socket, ntp6: socket.socket, udp_c4: socket.socket,
                     udp_c6: socket.socket) -> None:
    """What --tos and --inet-sockopt show: ToS, traffic class, priority, and flags set and cleared."""
    ip, ip6, sol = socket.IPPROTO_IP, socket.IPPROTO_IPV6, socket.SOL_SOCKET
    dns.setsockopt(ip, socket.IP_TOS, 0x10)
    dns.setsockopt(ip, 11, 1)  # IP_RECVERR
    dns.setsockopt(ip, 15, 1)  # IP_FREEBIND
    dns.setsockopt(sol, socket.SO_PRIORITY, 3)  # INET_DIAG_CLASS_ID where no net_cls class is set
    ntp6.setsockopt(ip6, 67, 0x20)  # IPV6_TCLASS
    ntp6.setsockopt(ip6, 75, 1)  # IPV6_TRANSPARENT: inet->transparent
    udp_c4.setsockopt(ip, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    udp_c4.setsockopt(ip, 49, 0)  # IP_MULTICAST_ALL off
    udp_c6.setsockopt(ip, 34, 0)  # IP_MULTICAST_LOOP off (SOL_IP on an IPv6 UDP socket reaches ip_setsockopt)


def open_raw() -> list[socket.socket]:
    """
    Raw sockets that receive nothing (their Recv-Q stays): ICMP and ICMPv6 with every type
    filtered out, one connected, one bound to a device, IPPROTO_RAW, an IPv6 one bound.
    """
    v4, v6, raw = socket.AF_INET, socket.AF_INET6, socket.SOCK_RAW
    icmp = socket.socket(v4, raw, socket.IPPROTO_ICMP)
    icmp.setsockopt(255, 1, (0xFFFFFFFF).to_bytes(4, "little"))  # SOL_RAW, ICMP_FILTER: block every type
    icmp6 = socket.socket(v6, raw, socket.IPPROTO_ICMPV6)
    icmp6.setsockopt(socket.IPPROTO_ICMPV6, 1, b"\xff" * 32)  # ICMP6_FILTER: block every type
    connected = socket.socket(v4, raw, 253)
    connected.connect(("127.0.0.1", 0))
    on_lo = socket.socket(v4, raw, 254)
    on_lo.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    bound6 = socket.socket(v6, raw, 253)
    bound6.bind(("::1", 0))
    hdrincl = socket.socket(v4, raw, socket.IPPROTO_RAW)
    hdrincl.setsockopt(socket.IPPROTO_IP, 22, 1)  # IP_NODEFRAG (raw sockets only)
    return [icmp, icmp6, connected, on_lo, hdrincl, bound6]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: a classic BPF program (code, jt, jf, k), which ss -b shows."""
    insns = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *insn) for insn in program))
    fprog = struct.pack("<HxxxxxxQ", len(program), ctypes.addressof(insns))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER: the kernel copies the program


def open_packet() -> list[socket.socket]:
    """
    Packet sockets that receive nothing: ETH_P_ALL on a dummy interface that is down, with a
    TPACKET_V3 receive ring; one in a fanout group; ARP (datagram) on lo; LLDP unbound.
    """
    subprocess.run(["ip", "link", "add", QUIET_DEVICE, "type", "dummy"], check=True)
    ifindex = socket.if_nametoindex(QUIET_DEVICE)
    every = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    every.bind((QUIET_DEVICE, 3))
    every.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
    # struct tpacket_req3: block size and count, frame size and count, timeout (ms), priv, features
    every.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("7I", 4096, 4, 2048, 8, 60, 0, 0))
    # A fanout group needs a running socket: on lo, for a protocol never sent (local experimental).
    fanout = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
    fanout.bind(("lo", 0x88B5))
    fanout.setsockopt(SOL_PACKET, PACKET_FANOUT, 42 | 1 << 16)  # PACKET_FANOUT_LB
    arp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0806))
    arp.bind(("lo", 0x0806))
    attach_filter(arp, [(0x28, 0, 0, 12), (0x15, 0, 1, 0x0806), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)])
    lldp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88CC))
    assert ifindex
    return [every, fanout, arp, lldp]


IPPROTO_MPTCP = 262
#: Whether this kernel has MPTCP, once open_mptcp() has run.
MPTCP = [True]


def open_mptcp() -> list[socket.socket]:
    """
    MPTCP sockets where the kernel has MPTCP (not Debian's 5.10): listeners on IPv4 and IPv6,
    an accepted connection with unread data, one waiting in the accept queue.
    """
    try:
        listener4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError:  # EPROTONOSUPPORT: ss -M lists nothing either
        MPTCP[0] = False
        return []
    listener4.bind(("127.0.0.1", 7010))
    listener4.listen(4)
    listener6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_MPTCP)
    listener6.bind(("::1", 7011))
    listener6.listen(2)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    client.connect(("127.0.0.1", 7010))
    served, _ = listener4.accept()
    client.send(b"m" * 300)
    waiting = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    waiting.connect(("127.0.0.1", 7010))
    return [listener4, listener6, client, served, waiting]


IPPROTO_SCTP = 132


def open_sctp() -> list[socket.socket]:
    """
    SCTP sockets (the sctp module): one-to-one listeners on IPv4 and IPv6, each with an
    accepted association (unread data on one), and a one-to-many socket listening with none.
    """
    stream = socket.SOCK_STREAM
    listener4 = socket.socket(socket.AF_INET, stream, IPPROTO_SCTP)
    listener4.bind(("127.0.0.1", 7020))
    listener4.listen(3)
    client4 = socket.socket(socket.AF_INET, stream, IPPROTO_SCTP)
    client4.connect(("127.0.0.1", 7020))
    served4, _ = listener4.accept()
    client4.send(b"s" * 50)
    listener6 = socket.socket(socket.AF_INET6, stream, IPPROTO_SCTP)
    listener6.bind(("::1", 7021))
    listener6.listen(2)
    client6 = socket.socket(socket.AF_INET6, stream, IPPROTO_SCTP)
    client6.connect(("::1", 7021))
    served6, _ = listener6.accept()
    many = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, IPPROTO_SCTP)
    many.bind(("127.0.0.1", 7022))
    many.listen(1)
    time.sleep(0.3)  # the handshakes' last chunks
    return [listener4, client4, served4, listener6, client6, served6, many]


VSOCK_PORT = 7012
VMADDR_CID_LOCAL = 1  # include/uapi/linux/vm_sockets.h


def open_vsock() -> list[socket.socket]:
    """
    vsock sockets through the loopback transport (vsock_loopback): a listener on the local
    context id, an accepted connection, an unbound socket.
    """
    vs = socket.AF_VSOCK
    listener = socket.socket(vs, socket.SOCK_STREAM)
    listener.bind((VMADDR_CID_LOCAL, VSOCK_PORT))
    listener.listen(2)
    client = socket.socket(vs, socket.SOCK_STREAM)
    client.connect((VMADDR_CID_LOCAL, VSOCK_PORT))
    served, _ = listener.accept()
    return [listener, client, served, socket.socket(vs, socket.SOCK_STREAM)]


#: A netlink port id the workload binds (no pid is that high: ss shows it as a number).
NETLINK_PORT = 4000001


def open_netlink() -> list[socket.socket]:
    """
    Netlink sockets: rtnetlink in a multicast group (netlink_diag lists it twice), one
    connected to the kernel, a usersock bound to a fixed port id, a generic one autobound.
    """
    nl = socket.AF_NETLINK
    groups = socket.socket(nl, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    groups.bind((0, 1))  # RTMGRP_LINK
    connected = socket.socket(nl, socket.SOCK_RAW, 0)
    connected.connect((0, 0))
    usersock = socket.socket(nl, socket.SOCK_RAW, 2)  # NETLINK_USERSOCK
    usersock.bind((NETLINK_PORT, 0))
    generic = socket.socket(nl, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    generic.bind((0, 0))
    return [groups, connected, usersock, generic]


def open_everything() -> tuple[list[Any], list[int]]:
    """Open the whole workload; return what must stay referenced, and the child pids."""
    v4, v6 = socket.AF_INET, socket.AF_INET6
    held: list[Any] = []
    pids: list[int] = []

    ssh = listener(v4, "0.0.0.0", 22)
    http6 = listener(v6, "::", 80, v6only=True)
    dual = listener(v6, "::", 8080, v6only=False)
    loop6 = listener(v6, "::1", 443)
    pg = listener(v4, "127.0.0.1", 5432, device=b"lo")
    small = listener(v4, "127.0.0.1", 7001, rcvbuf=4096)
    backlog = listener(v4, "127.0.0.1", 7002, backlog=4)
    held += [ssh, http6, dual, loop6, pg, small, backlog]

    # Established pairs: IPv4, IPv6, IPv4-mapped IPv6 (through the dual-stack listener).
    for family, addr, lst in ((v4, "127.0.0.1", ssh), (v6, "::1", loop6), (v6, "::ffff:127.0.0.1", dual)):
        c = connect(family, addr, lst.getsockname()[1])
        a, _ = lst.accept()
        held += [c, a]
    # Unread data on both sides: the receiver's small buffer fills, the rest waits in Send-Q.
    sender = connect(v4, "127.0.0.1", 7001)
    receiver, _ = small.accept()
    sender.setblocking(False)
    try:
        for _ in range(1000):
            sender.send(b"x" * 4096)
    except BlockingIOError:
        pass
    held += [sender, receiver]
    # Unread bytes the other way, small enough to be delivered at once.
    receiver.send(b"y" * 1000)
    # A connection left in the accept queue (listener Recv-Q 1).
    held.append(connect(v4, "127.0.0.1", 7002))
    time.sleep(0.2)

    # FIN-WAIT-2 and CLOSE-WAIT: the client shuts down writing; the server never closes.
    c = connect(v6, "::1", 443)
    a, _ = loop6.accept()
    c.shutdown(socket.SHUT_WR)
    held += [c, a]

    # UDP: bound and connected, IPv4 and IPv6; one datagram left unread.
    dns = socket.socket(v4, socket.SOCK_DGRAM)
    dns.bind(("0.0.0.0", 53))
    ntp6 = socket.socket(v6, socket.SOCK_DGRAM)
    ntp6.bind(("::", 123))
    udp_c4 = socket.socket(v4, socket.SOCK_DGRAM)
    udp_c4.connect(("127.0.0.1", 53))
    udp_c4.send(b"q" * 300)
    udp_c6 = socket.socket(v6, socket.SOCK_DGRAM)
    udp_c6.bind(("::1", 0))
    udp_c6.connect(("::1", 123))
    held += [dns, ntp6, udp_c4, udp_c6]
    set_inet_options(dns, ntp6, udp_c4, udp_c6)

    # A listener held by two processes, and a SO_REUSEPORT group across two.
    shared = listener(v4, "0.0.0.0", 7003)
    held.append(shared)
    pids.append(child("ss-forked", [shared]))
    reuse = listener(v4, "0.0.0.0", 7004, reuseport=True)
    held.append(reuse)
    pids.append(child("ss-reuse", [], lambda: listener(v4, "0.0.0.0", 7004, reuseport=True)))

    # A process with two more threads, one named apart (ss -T lists each with its tid).
    pids.append(child("ss-threads", [], lambda: threaded(listener(v4, "127.0.0.1", 7007))))

    # Sockets made in a nested cgroup (ss -e: "cgroup:/drgn-ss/inner"), where cgroup2 is mounted.
    inner = "/sys/fs/cgroup/drgn-ss/inner"
    if os.path.exists("/sys/fs/cgroup/cgroup.procs"):
        os.makedirs(inner, exist_ok=True)
        pids.append(child("ss-cgroup", [], lambda: in_cgroup(inner, lambda: [
            listener(v4, "127.0.0.1", 7005), udp_bound(v6, "::1", 7005)])))

    # Unix, raw and packet sockets, each held by this process and a child.
    more = (open_unix() + open_raw() + open_packet() + open_netlink() + open_mptcp() + open_sctp()
            + open_vsock())
    held += more
    pids.append(child("ss-holder", more))

    # A process with a hostile name, holding a listener.
    HOSTILE_PID.append(child(HOSTILE_NAME, [], lambda: listener(v4, "127.0.0.1", HOSTILE_PORT)))
    pids += HOSTILE_PID

    # Network namespaces with sockets on the same ports (--all-netns, --netns).
    NAMESPACES.update(open_namespaces())
    pids += [NAMESPACES[name]["pid"] for name in NETNS_NAMES]

    # A listener in another network namespace: never in the default listing.
    held.append(subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c",
         "import socket, signal; s = socket.socket(); s.bind(('0.0.0.0', 22)); s.listen(); "
         "print('ok', flush=True); signal.pause()"],
        stdout=subprocess.PIPE))
    held[-1].stdout.readline()
    time.sleep(0.3)
    return held, pids


def netns_child(name: str) -> int:
    """
    Fork a process named ``name`` into a new network namespace (loopback up) holding TCP
    listeners on 127.0.0.1:9000 and [::]:9000, an established pair to the first, and a UDP
    socket on 0.0.0.0:9001; return its pid once all that is open.
    """
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        with os.fdopen(ready_r) as ready:
            if ready.read() != "ok":
                raise RuntimeError(f"{name}: the namespace's sockets could not be opened")
        return pid
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # as child() does
        for fd in range(3, 1024):  # none of the parent's sockets: they would gain an owner
            if fd != ready_w:
                with contextlib.suppress(OSError):
                    os.close(fd)
        set_name(name)
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        v4, v6 = socket.AF_INET, socket.AF_INET6
        held = [listener(v4, "127.0.0.1", 9000), listener(v6, "::", 9000, v6only=True)]
        held.append(connect(v4, "127.0.0.1", 9000))
        held.append(held[0].accept()[0])
        held.append(udp_bound(v4, "0.0.0.0", 9001))
        abstract = socket.socket(socket.AF_UNIX)  # abstract names are per namespace
        abstract.bind("\0DRGN-SS-abstract")
        abstract.listen(1)
        held += [abstract, *socket.socketpair(), socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)]
        os.write(ready_w, b"ok")
        os.close(ready_w)
        signal.pause()
    finally:
        os._exit(0)


def open_namespaces() -> dict[str, Any]:
    """Start the NETNS_NAMES processes; their pids, namespace inodes, and whether the last has
    private tables (which of CHILD_TABLE_SYSCTLS this kernel has)."""
    out: dict[str, Any] = {"private_tables": []}
    for name in NETNS_NAMES:
        private = name == "ns-private"
        sysctls = [path for path in CHILD_TABLE_SYSCTLS if private and os.path.exists(path)]
        for path in sysctls:
            with open(path, "w") as f:
                f.write("128\n")
        try:
            pid = netns_child(name)
        finally:
            for path in sysctls:
                with open(path, "w") as f:
                    f.write("0\n")
        out["private_tables"] += [os.path.basename(path) for path in sysctls]
        out[name] = {"pid": pid, "inode": os.stat(f"/proc/{pid}/ns/net").st_ino}
    return out


def netns_ss_outputs(namespaces: dict[str, Any]) -> None:
    """ss run inside each namespace (nsenter), with NETNS_OPTION_SETS: the oracle for each."""
    for name in NETNS_NAMES:
        ns = namespaces[name]
        ns["ss"] = {opts: subprocess.run(["nsenter", f"--net=/proc/{ns['pid']}/ns/net", "ss", "-H",
                                          *opts.split()], capture_output=True, text=True, check=True).stdout
                    for opts in NETNS_OPTION_SETS}


def as_ss7(text: str) -> str:
    """
    ss's output with the hostile name as ss 7.0+ shows it (HOSTILE_SHOWN): the same bytes
    as ss 6.1's raw name, one for one, so column widths do not change.
    """
    return text.replace(f'("{HOSTILE_RAW}",', f'("{HOSTILE_SHOWN}",')


def ss_outputs() -> dict[str, str]:
    """ss -H with each of OPTION_SETS and FILTER_SETS (see :func:`as_ss7`)."""
    return {
        opts: as_ss7(subprocess.run(["ss", "-H", *opts.split()], capture_output=True, text=True,
                                    check=True).stdout)
        for opts in OPTION_SETS + FILTER_SETS
    }


def proc_owner_lists() -> dict[str, list[list[Any]]]:
    from drgn_ss.owners import proc_owners

    return {str(ino): [[o.comm, o.pid, o.fd] for o in owners] for ino, owners in proc_owners().items()}


def open_who_holds() -> dict[str, Any]:
    """
    What --containers and --kernel-users are checked against, each in a network namespace
    of its own: processes in every container runtime's cgroup layout, a container crun
    started, and sockets the kernel holds (tunnels, the NFS server and client).
    """
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.kernel.container_cgroups import open_container_cgroups
    from tests.kernel.container_run import start_container
    from tests.kernel.kernel_socks import open_kernel_sockets
    from vmtests.guest_tools import tools_dir

    # The NFS tools and crun: fetched by vmtests on the host (vmtests.guest_tools), seen here.
    tools = str(tools_dir() / "root") if (tools_dir() / "stamp.json").exists() else None
    return {"container_cgroups": open_container_cgroups(),
            "kernel_socks": open_kernel_sockets(tools),
            "container": (start_container(tools) if tools else
                          {"skipped": "no crun: vmtests fetches the guest tools with the kernels"})}


def open_whats_wrong(lower_limits: bool) -> dict[str, Any]:
    """What --queues and --report are checked against, in a network namespace of its own:
    listeners with known connections waiting in their queues, CLOSE-WAIT, TIME-WAIT and
    orphaned sockets; with ``lower_limits``, the host's orphan and memory limits crossed."""
    from tests.kernel.listen_queues import open_listen_queues

    started = time.monotonic()
    out = {"listen_queues": open_listen_queues(lower_limits)}
    print(f"listen queues: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return out


def main() -> int:
    set_name("ss-workload")
    listeners = open_listeners()  # referenced until the guest stops: closed if collected
    held, pids = open_everything()
    info = describe(listeners)
    info["children"] = pids
    info["pid"] = os.getpid()
    info.update(open_who_holds())
    # The guest the outside modes read runs nothing else: it may lower host-wide limits.
    info.update(open_whats_wrong("--lower-limits" in sys.argv[1:]))
    info["hostile_pid"] = HOSTILE_PID[0]
    info["mptcp"] = MPTCP[0]
    info["time_wait_at"] = time_wait(held[0])  # the listener on port 22
    info["ss"] = ss_outputs()
    info["ss_summary"] = subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
    netns_ss_outputs(NAMESPACES)
    info["netns"] = NAMESPACES
    info["proc_owners"] = proc_owner_lists()
    info["monotonic_time"] = time.monotonic()  # the guest's CLOCK_MONOTONIC once all is open
    info["wall_time"] = time.time()  # the guest's clock, for the time nethogs shows on a dump of it
    print("WORKLOAD " + json.dumps(info))
    print("READY", flush=True)
    while held:  # everything in `held` stays open while we wait
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
