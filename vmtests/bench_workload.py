"""The benchmark's workloads: many connections over many processes, like a busy server.

Run as a script (on the host in a private network namespace, or in a guest); it needs
nothing but the standard library::

    python3 vmtests/bench_workload.py ESTABLISHED
    python3 vmtests/bench_workload.py --unix SOCKETS

The first opens ESTABLISHED established TCP sockets (ESTABLISHED/2 loopback connections,
both ends held) spread over WORKERS processes, 205 listeners, 2,000 UDP sockets and about
1,000 TIME-WAIT minisocks (renewed as they expire, so the count holds while tools run).
Past 100,000 established (:func:`tcp_scale`), a busier server: BIG_WORKERS processes, and
UDP sockets and TIME-WAIT minisocks scaled with the established ones.

With ``--unix``: SOCKETS connected unix stream sockets (SOCKETS/2 connections, both ends
held) spread over UNIX_WORKERS processes, made through UNIX_LISTENERS listeners bound to
paths in a directory of their own, like a pre-forked daemon's workers serving its clients:
the listeners are the main process's, and each worker shares one of them.

Either prints ``READY`` and waits for SIGTERM or SIGINT, then ends its workers (and, for
``--unix``, removes the listeners' directory).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable

WORKERS = 54
#: The workers of a workload past 100,000 established sockets.
BIG_WORKERS = 100
LISTENERS = 204  # and the TIME-WAIT listener: 205
UDP = 2000
TIME_WAIT = 1000
#: TIME-WAIT lasts 60 s (TCP_TIMEWAIT_LEN): renew a share every RENEW seconds.
RENEW = 15
BASE_PORT = 20000
UDP_BASE_PORT = 40000
TW_PORT = BASE_PORT + LISTENERS

UNIX_WORKERS = 50
#: The unix listeners, each shared by UNIX_WORKERS / UNIX_LISTENERS workers.
UNIX_LISTENERS = 5


def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(n, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def _listener(port: int, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
    s.listen(4096)
    return s


def _connect_pairs(listeners: list[socket.socket], pairs: int) -> list[socket.socket]:
    """
    ``pairs`` connections to these listeners, both ends kept open. A listener shared with
    other processes may hand this one another's connection: the ends are held all the same.
    """
    keep = []
    for i in range(pairs):
        lst = listeners[i % len(listeners)]
        c = socket.socket(lst.family, socket.SOCK_STREAM)
        c.connect(lst.getsockname()[:2] if lst.family != socket.AF_UNIX else lst.getsockname())
        a, _ = lst.accept()
        keep += [c, a]
    return keep


def _share(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` as evenly as it goes."""
    return [total // parts + (1 if w < total % parts else 0) for w in range(parts)]


def _start_workers(work: list[Callable[[], object]]) -> list[int] | None:
    """
    Fork a worker for each of ``work``; each runs its task (what it returns is kept open),
    says so and waits for a signal. Their pids once all are up, None if one died first.
    """
    ready_r, ready_w = os.pipe()
    children = []
    for task in work:
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            try:
                keep = task()
                os.write(ready_w, b".")
                os.close(ready_w)
                signal.pause()
                del keep
            except Exception as e:
                print(f"bench_workload: worker {os.getpid()}: {e!r}", file=sys.stderr)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(ready_w)
    got = 0
    while got < len(work):
        data = os.read(ready_r, len(work))
        if not data:
            print(f"bench_workload: only {got} of {len(work)} workers came up", file=sys.stderr)
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            return None
        got += len(data)
    os.close(ready_r)
    return children


def _hold(children: list[int]) -> None:
    """Say READY, wait for SIGTERM or SIGINT, then end the workers."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print("READY", flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    for signum in (signal.SIGTERM, signal.SIGINT):  # a second signal: the workers are ending
        signal.signal(signum, signal.SIG_IGN)
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)


def _time_wait(lst: socket.socket, n: int) -> None:
    """``n`` TIME-WAIT minisocks: the connecting side closes first."""
    for _ in range(n):
        c = socket.socket()
        c.connect(lst.getsockname())
        a, _ = lst.accept()
        c.close()
        a.close()


def _renew_time_wait(lst: socket.socket, count: int) -> None:
    while True:
        time.sleep(RENEW)
        _time_wait(lst, count * RENEW // 60)


def _tcp_task(listeners: list[socket.socket], mine: list[socket.socket],
              pairs: int) -> Callable[[], object]:
    def task() -> object:
        for lst in listeners:  # each worker holds its own listeners only
            if lst not in mine:
                lst.close()
        return _connect_pairs(mine, pairs)
    return task


def tcp_scale(established: int) -> tuple[int, int, int]:
    """The workers, UDP sockets and TIME-WAIT minisocks of a TCP workload of this size."""
    scale = max(1, established // 100_000)
    return (WORKERS if scale == 1 else BIG_WORKERS), UDP * scale, TIME_WAIT * scale


def tcp_main(established: int) -> int:
    """The TCP workload (the module's first form)."""
    pairs = established // 2
    workers, udp_count, time_wait = tcp_scale(established)
    _raise_fd_limit(2 * pairs // workers + LISTENERS + udp_count + 1000)
    # One listener in eight on IPv6, as on a dual-stack server.
    listeners = [_listener(BASE_PORT + i, socket.AF_INET6 if i % 8 == 7 else socket.AF_INET)
                 for i in range(LISTENERS)]
    per_worker = _share(pairs, workers)
    children = _start_workers([
        _tcp_task(listeners, [listeners[i] for i in range(LISTENERS) if i % workers == w], per_worker[w])
        for w in range(workers)])
    if children is None:
        return 1
    udp = []
    for i in range(udp_count):  # ports 40000-59999 at most, on as many addresses as it takes
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((f"127.0.0.{1 + i // 20000}", UDP_BASE_PORT + i % 20000))
        udp.append(u)
    tw = _listener(TW_PORT)
    _time_wait(tw, time_wait)
    threading.Thread(target=_renew_time_wait, args=(tw, time_wait), daemon=True).start()
    _hold(children)
    return 0


def _unix_task(listeners: list[socket.socket], mine: socket.socket, pairs: int) -> Callable[[], object]:
    def task() -> object:
        for lst in listeners:  # each worker holds the listener it shares only
            if lst is not mine:
                lst.close()
        return _connect_pairs([mine], pairs)
    return task


def unix_main(sockets: int) -> int:
    """The unix workload: ``sockets`` connected unix stream sockets (``--unix``)."""
    pairs = sockets // 2
    _raise_fd_limit(2 * pairs // UNIX_WORKERS + 2 * UNIX_LISTENERS + 1000)
    directory = tempfile.mkdtemp(prefix="bench-unix-")
    try:
        listeners = []
        for i in range(UNIX_LISTENERS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(os.path.join(directory, f"daemon{i}.sock"))
            s.listen(4096)
            listeners.append(s)
        per_worker = _share(pairs, UNIX_WORKERS)
        children = _start_workers([_unix_task(listeners, listeners[w % UNIX_LISTENERS], per_worker[w])
                                   for w in range(UNIX_WORKERS)])
        if children is None:
            return 1
        _hold(children)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--unix" and argv[1].isdigit():
        return unix_main(int(argv[1]))
    if len(argv) == 1 and argv[0].isdigit():
        return tcp_main(int(argv[0]))
    print("usage: bench_workload.py ESTABLISHED | --unix SOCKETS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
