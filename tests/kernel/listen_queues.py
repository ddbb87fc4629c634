"""The guest side of --queues: listeners whose queues hold known connections, in a network
namespace of their own (so that the listings the rest of the matrix compares with ss do
not change), held by a process of their own (``ss-queues``).

- :data:`DEFER_PORT`: a TCP listener with TCP_DEFER_ACCEPT that never accepts:
  :data:`WAITING` clients connect and send a byte (each child waits in its accept queue),
  :data:`HELD` connect and send nothing (each request stays in SYN-RECV: with
  TCP_DEFER_ACCEPT the kernel drops their bare ACK and sends no SYN-ACK again while it
  waits for data).
- :data:`FULL_PORT`: a listener with a backlog of 1 that never accepts, connected to until
  a SYN is dropped (its accept queue full); the client of that SYN is closed then, so the
  drops stay as counted.
- :data:`UNIX_PATH`: a unix listener that never accepts, with :data:`WAITING` connections.
- For --ages, on :data:`IDLE_PORT`, a connection that exchanged one request and reply and
  then nothing; on :data:`ZERO_WINDOW_PORT`, one whose receiver never reads (its window
  closed, the sender's data waiting), and asked for receive timestamps.

Each connection's CLOCK_MONOTONIC time once it is established (the kernel's clock of
TCP's stamps) is in the truth, with the namespace's TcpExt counters once all is done. The
sockets the triage report counts (tests/kernel/report_states.py) are made here too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import subprocess
import time
from typing import Any

from tests.kernel.guest_commands import fork_holder
from tests.kernel.report_states import (
    LOWERED,
    lower_host_limits,
    make_report_states,
    open_host_limits,
    read_sockstat,
    tcp_listener,
)

__all__ = ["DEFER_PORT", "FULL_PORT", "HELD", "IDLE_PORT", "SS_OPTION_SETS", "UNIX_PATH", "WAITING",
           "ZERO_WINDOW_PORT", "open_listen_queues"]

DEFER_PORT = 7300
FULL_PORT = 7301
IDLE_PORT = 7302
ZERO_WINDOW_PORT = 7303
WAITING = 3
HELD = 2
UNIX_PATH = "/tmp/drgnss-queue.sock"
CLONE_NEWNET = 0x40000000
TCP_DEFER_ACCEPT = 9
SO_TIMESTAMP = 29  # include/uapi/asm-generic/socket.h (x86 too)
#: How long a dropped SYN is waited for: the kernel answers a queued one at once.
_SYN_WAIT_S = 1.0


def open_listen_queues(lower_limits: bool = False) -> dict[str, Any]:
    """
    Fork the holder; the truth it reports (or {"failed": why}). ``lower_limits``: lower the
    host-wide limits the report warns about (tests/kernel/report_states.py) once all is made.
    """
    pid, report = fork_holder(lambda: _hold(lower_limits))
    if not report:
        return {"failed": "the queue holder failed (its traceback is on the workload's stderr)"}
    return {**json.loads(report), "pid": pid}


def _hold(lower_limits: bool) -> tuple[bytes, list[socket.socket]]:
    """In the holder: a namespace of its own, every piece in it; the truth, and what to keep open."""
    ctypes.CDLL(None).prctl(15, b"ss-queues", 0, 0, 0)  # PR_SET_NAME
    host_limits = open_host_limits() if lower_limits else None  # the initial namespace's
    initial = _host_sysctls()  # only the initial namespace shows them
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    held: list[socket.socket] = []
    truth = {"netns_inode": os.stat("/proc/self/ns/net").st_ino,
             "defer": _defer_listener(held), "full": _full_listener(held), "unix": _unix_listener(held),
             "idle": _idle_pair(held), "zero_window": _zero_window(held),
             "report": make_report_states(held)}
    if host_limits is not None:
        lower_host_limits(host_limits)
        initial.update({name: [int(word) for word in value.split()] for name, value in LOWERED.items()})
    truth.update(netstat=_tcp_ext(), ss=_ss_outputs(), sockstat=read_sockstat(), sysctls=initial,
                 sockets=_socket_fds(), lowered=lower_limits)
    return json.dumps(truth).encode(), held


def _client(port: int, held: list[socket.socket], data: bytes) -> dict[str, Any]:
    c = socket.create_connection(("127.0.0.1", port))
    if data:
        c.send(data)
    held.append(c)
    return {"port": c.getsockname()[1], "at": time.monotonic()}


def _defer_listener(held: list[socket.socket]) -> dict[str, Any]:
    s = tcp_listener(DEFER_PORT, held, 16)
    s.setsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 3600)
    waiting = [_client(DEFER_PORT, held, b"x") for _ in range(WAITING)]
    syn_recv = [_client(DEFER_PORT, held, b"") for _ in range(HELD)]
    return {"port": DEFER_PORT, "backlog": 16, "waiting": waiting, "syn_recv": syn_recv}


def _full_listener(held: list[socket.socket]) -> dict[str, Any]:
    """Connect to a backlog-1 listener until a SYN goes unanswered; close that client."""
    tcp_listener(FULL_PORT, held, 1)
    waiting = []
    for _ in range(8):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", FULL_PORT))
        _, writable, _ = select.select([], [c], [], _SYN_WAIT_S)
        if not writable:
            c.close()  # its SYN was dropped: no more of them
            break
        held.append(c)
        waiting.append({"port": c.getsockname()[1], "at": time.monotonic()})
    return {"port": FULL_PORT, "backlog": 1, "waiting": waiting}


def _accepted_pair(port: int, held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    listener = tcp_listener(port, held, 4)
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    held += [client, server]
    return client, server


def _idle_pair(held: list[socket.socket]) -> dict[str, Any]:
    """A connection that exchanged a request and a reply, then nothing: every stamp that old."""
    client, server = _accepted_pair(IDLE_PORT, held)
    before = time.monotonic()
    client.sendall(b"ping")
    server.recv(4)
    server.sendall(b"pong")
    client.recv(4)
    return {"port": IDLE_PORT, "client_port": client.getsockname()[1], "before": before,
            "after": time.monotonic()}


def _zero_window(held: list[socket.socket]) -> dict[str, Any]:
    """
    A receiver that never reads, and asked for timestamps (so the kernel stamps what
    arrives): its queue fills, its window closes, the sender's data waits unsent.
    """
    client, server = _accepted_pair(ZERO_WINDOW_PORT, held)
    server.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    time.sleep(0.5)  # net_enable_timestamp() turns the stamping on from a work queue
    client.setblocking(False)
    first = time.monotonic()
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < 64 << 20:
            sent += client.send(b"z" * 65536)
    return {"port": ZERO_WINDOW_PORT, "client_port": client.getsockname()[1], "first_send": first,
            "sent": sent}


def _unix_listener(held: list[socket.socket]) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(UNIX_PATH)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(UNIX_PATH)
    s.listen(8)
    held.append(s)
    clients = []
    for _ in range(WAITING):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(UNIX_PATH)
        held.append(c)
        clients.append({"inode": os.fstat(c.fileno()).st_ino})
    return {"path": UNIX_PATH, "inode": os.fstat(s.fileno()).st_ino, "backlog": 8, "waiting": clients}


#: What ss shows of the namespace once all is open: the oracle for what it can show.
SS_OPTION_SETS = ("-tlnm", "-tan", "-xln")


def _ss_outputs() -> dict[str, str]:
    return {opts: subprocess.run(["ss", "-H", opts], capture_output=True, text=True, check=True).stdout
            for opts in SS_OPTION_SETS}


def _socket_fds() -> int:
    """How many sockets this process holds (the directory's own fd is gone when read)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def _host_sysctls() -> dict[str, list[int]]:
    """The host-wide limits as they are (read in the initial namespace: only it shows them)."""
    out = {}
    for name in ("tcp_mem", "udp_mem", "tcp_max_orphans"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            out[name] = [int(word) for word in f.read().split()]
    return out


def _tcp_ext() -> dict[str, int]:
    """This namespace's TcpExt counters (/proc/net/netstat)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return {name: int(value) for name, value in zip(lines[0][1:], lines[1][1:])}
