"""The guest side of --report: sockets in each state a triage report counts, with known
numbers, made by the ``ss-queues`` holder (tests/kernel/listen_queues.py) in its network
namespace, after its queues:

- :data:`CLOSE_WAIT` connections to :data:`CLOSE_WAIT_PORT` whose clients shut their
  sending side and the holder never closes: CLOSE-WAIT sockets of known ages;
- :data:`TIME_WAIT` connections to :data:`TIME_WAIT_PORT` closed by their clients first:
  TIME-WAIT sockets to one peer, from a local port range of :data:`PORT_RANGE` (so that one
  destination uses 90% of it) under a ``tcp_max_tw_buckets`` of :data:`MAX_TW` (90% of it);
- :data:`ORPHANS` connections to :data:`ORPHAN_PORT`, whose receiver never reads, closed
  by their clients with data unsent: orphans (FIN-WAIT-1, probing a zero window; kept as
  long as the peer answers, ``tcp_orphan_retries`` raised in the namespace).

The host-wide limits (``tcp_max_orphans``, ``tcp_mem``) are left alone here: they would
change every test running in the same guest. :func:`lower_host_limits` lowers them (the
guest dumped for the outside modes, and the live test around its own run) so that the
orphans and TCP's memory cross them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

__all__ = ["CLOSE_WAIT", "CLOSE_WAIT_PORT", "MAX_TW", "ORPHANS", "ORPHAN_PORT", "PORT_RANGE", "TIME_WAIT",
           "TIME_WAIT_PORT", "lower_host_limits", "make_report_states", "read_sockstat",
           "restore_host_limits", "tcp_listener"]

CLOSE_WAIT_PORT, TIME_WAIT_PORT, ORPHAN_PORT, PRESSURE_PORT = 7305, 7306, 7307, 7308
CLOSE_WAIT = 3
TIME_WAIT = 9
ORPHANS = 4
PORT_RANGE = (40000, 40009)
MAX_TW = 10
#: A tcp_max_orphans ORPHANS are 80% of, and a tcp_mem (pages) whose pressure mark any
#: TCP memory crosses; its max stays far above (no allocation fails).
LOWERED_MAX_ORPHANS = 5
LOWERED_TCP_MEM = (1, 2, 1 << 30)


def _sysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
        f.write(value)


def tcp_listener(port: int, held: list[socket.socket], backlog: int = 16) -> socket.socket:
    """A TCP listener on 127.0.0.1:``port``, kept in ``held``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(backlog)
    held.append(s)
    return s


def _close_wait(held: list[socket.socket]) -> dict[str, Any]:
    listener = tcp_listener(CLOSE_WAIT_PORT, held)
    made = []
    for _ in range(CLOSE_WAIT):
        client = socket.create_connection(("127.0.0.1", CLOSE_WAIT_PORT))
        server, _ = listener.accept()
        before = time.monotonic()
        # Its FIN: the server's end is in CLOSE-WAIT from here. The client keeps its end
        # (FIN-WAIT-2, held): closed, it would become a minisock that expires.
        client.shutdown(socket.SHUT_WR)
        server.recv(1)  # EOF once the FIN is in
        held += [client, server]
        made.append({"port": server.getpeername()[1], "before": before, "after": time.monotonic()})
    return {"port": CLOSE_WAIT_PORT, "sockets": made}


def _time_wait(held: list[socket.socket]) -> dict[str, Any]:
    _sysctl("ip_local_port_range", f"{PORT_RANGE[0]} {PORT_RANGE[1]}")
    _sysctl("tcp_max_tw_buckets", str(MAX_TW))
    listener = tcp_listener(TIME_WAIT_PORT, held)
    ports = []
    for _ in range(TIME_WAIT):
        client = socket.create_connection(("127.0.0.1", TIME_WAIT_PORT))
        server, _ = listener.accept()
        ports.append(client.getsockname()[1])
        client.close()  # the client closes first: its end goes to TIME-WAIT
        server.recv(1)
        server.close()
    return {"port": TIME_WAIT_PORT, "local_ports": ports, "range": list(PORT_RANGE), "max": MAX_TW,
            "at": time.monotonic()}  # TIME-WAIT lasts 60 s (TCP_TIMEWAIT_LEN) from about then


def _orphans(held: list[socket.socket]) -> dict[str, Any]:
    _sysctl("tcp_orphan_retries", "100")  # an orphan whose peer answers its probes stays
    listener = tcp_listener(ORPHAN_PORT, held)
    ports = []
    for _ in range(ORPHANS):
        client = socket.create_connection(("127.0.0.1", ORPHAN_PORT))
        server, _ = listener.accept()
        held.append(server)  # it never reads: the client's data stops at a zero window
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                client.send(b"o" * 65536)
        ports.append(client.getsockname()[1])
        client.close()  # with data unsent: FIN-WAIT-1, orphaned
    return {"port": ORPHAN_PORT, "local_ports": ports}


def make_report_states(held: list[socket.socket]) -> dict[str, Any]:
    """Make every piece, in this process's namespace; the truth of each."""
    return {"close_wait": _close_wait(held), "orphans": _orphans(held), "time_wait": _time_wait(held)}


def read_sockstat() -> dict[str, int]:
    """/proc/net/sockstat's TCP line (of this namespace: tw; host-wide: orphan, mem)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()[1:]
                return {name: int(value) for name, value in zip(words[::2], words[1::2])}
    return {}


#: The host-wide sysctls :func:`lower_host_limits` lowers, and what to.
LOWERED = {"tcp_max_orphans": str(LOWERED_MAX_ORPHANS), "tcp_mem": " ".join(map(str, LOWERED_TCP_MEM))}


def open_host_limits() -> dict[str, Any]:
    """
    The host-wide sysctls :func:`lower_host_limits` writes, opened for writing, and their
    values now. Only the initial network namespace has them: open them there, before
    entering another (a file opened keeps the namespace it was opened in).
    """
    out: dict[str, Any] = {}
    for name in LOWERED:
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            before = f.read().strip()
        out[name] = (open(f"/proc/sys/net/ipv4/{name}", "w"), before)  # noqa: SIM115 (kept open)
    return out


def lower_host_limits(files: dict[str, Any]) -> dict[str, str]:
    """
    Lower ``tcp_max_orphans`` and ``tcp_mem`` (through :func:`open_host_limits`' files) so
    that the orphans and TCP's memory cross them, and make TCP allocate once (the pressure
    flag is set by an allocation over the mark), in this process's namespace, leaving no
    socket behind; the values before, to restore.
    """
    for name, (f, _before) in files.items():
        f.write(LOWERED[name])
        f.flush()
    held: list[socket.socket] = []
    listener = tcp_listener(PRESSURE_PORT, held)
    client = socket.create_connection(("127.0.0.1", PRESSURE_PORT))
    server, _ = listener.accept()
    client.sendall(b"p" * 65536)
    got = 0
    while got < 65536:
        got += len(server.recv(65536))
    for s in (client, server):  # reset, not closed: no TIME-WAIT is left of them
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    for s in (client, server, listener):
        s.close()
    return {name: before for name, (_f, before) in files.items()}


def restore_host_limits(before: dict[str, str]) -> None:
    """Put back what :func:`lower_host_limits` changed (from the initial network namespace)."""
    for name, value in before.items():
        _sysctl(name, value)
