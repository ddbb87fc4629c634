"""The benchmark's workload: many TCP connections over many processes, like a busy server.

Run as a script (on the host in a private network namespace, or in a guest); it needs
nothing but the standard library::

    python3 vmtests/bench_workload.py ESTABLISHED

It opens ESTABLISHED established sockets (ESTABLISHED/2 loopback connections, both ends
held) spread over WORKERS processes, 205 listeners, 2,000 UDP sockets and about 1,000
TIME-WAIT minisocks (renewed as they expire, so the count holds while tools run), prints
``READY`` and waits for SIGTERM or SIGINT, then ends its workers.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sys
import threading
import time

WORKERS = 54
LISTENERS = 204  # and the TIME-WAIT listener: 205
UDP = 2000
TIME_WAIT = 1000
#: TIME-WAIT lasts 60 s (TCP_TIMEWAIT_LEN): renew a share every RENEW seconds.
RENEW = 15
BASE_PORT = 20000
UDP_BASE_PORT = 40000
TW_PORT = BASE_PORT + LISTENERS


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
    """``pairs`` connections to these listeners, both ends kept open."""
    keep = []
    for i in range(pairs):
        lst = listeners[i % len(listeners)]
        c = socket.socket(lst.family, socket.SOCK_STREAM)
        c.connect(lst.getsockname()[:2])
        a, _ = lst.accept()
        keep += [c, a]
    return keep


def _worker(listeners: list[socket.socket], pairs: int, ready: int) -> None:
    keep = _connect_pairs(listeners, pairs)
    os.write(ready, b".")
    os.close(ready)
    signal.pause()
    del keep


def _time_wait(lst: socket.socket, n: int) -> None:
    """``n`` TIME-WAIT minisocks: the connecting side closes first."""
    for _ in range(n):
        c = socket.socket()
        c.connect(lst.getsockname())
        a, _ = lst.accept()
        c.close()
        a.close()


def _renew_time_wait(lst: socket.socket) -> None:
    while True:
        time.sleep(RENEW)
        _time_wait(lst, TIME_WAIT * RENEW // 60)


def main() -> int:
    established = int(sys.argv[1])
    pairs = established // 2
    _raise_fd_limit(2 * pairs // WORKERS + LISTENERS + UDP + 1000)
    # One listener in eight on IPv6, as on a dual-stack server.
    listeners = [_listener(BASE_PORT + i, socket.AF_INET6 if i % 8 == 7 else socket.AF_INET)
                 for i in range(LISTENERS)]
    per_worker = [pairs // WORKERS + (1 if w < pairs % WORKERS else 0) for w in range(WORKERS)]
    ready_r, ready_w = os.pipe()
    children = []
    for w in range(WORKERS):
        mine = [listeners[i] for i in range(LISTENERS) if i % WORKERS == w]
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            for lst in listeners:  # each worker holds its own listeners only
                if lst not in mine:
                    lst.close()
            try:
                _worker(mine, per_worker[w], ready_w)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(ready_w)
    got = 0
    while got < WORKERS:
        data = os.read(ready_r, WORKERS)
        if not data:
            print(f"bench_workload: only {got} of {WORKERS} workers came up", file=sys.stderr)
            return 1
        got += len(data)
    udp = []
    for i in range(UDP):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", UDP_BASE_PORT + i))
        udp.append(u)
    tw = _listener(TW_PORT)
    _time_wait(tw, TIME_WAIT)
    threading.Thread(target=_renew_time_wait, args=(tw,), daemon=True).start()
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print("READY", flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
