"""Churn for the reliability tests: sockets opened and closed continuously while drgn-ss reads.

``python tests/kernel/churn.py`` forks :data:`TCP_CLIENTS` processes that connect to a
loopback listener, send a few bytes and close, over and over (the server accepts and
closes; each connection leaves a TIME-WAIT), and :data:`UDP_CHURNERS` that open, bind, send
on and close UDP sockets, IPv4 and IPv6. It prints ``READY`` once traffic flows, then runs
until killed (SIGTERM stops the whole group) and prints how many sockets it made.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

TCP_CLIENTS = 3
UDP_CHURNERS = 2


def serve(lst: socket.socket) -> None:
    while True:
        try:
            conn, _ = lst.accept()
        except OSError:
            continue
        conn.close()


def tcp_client(port: int, family: int, addr: str) -> None:
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as c:
                c.connect((addr, port))
                c.send(b"x" * 100)
        except OSError:
            time.sleep(0.01)


def udp_churner(family: int, addr: str) -> None:
    while True:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
            s.sendto(b"y", s.getsockname()[:2])


def fork(target: object, *args: object) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            target(*args)  # type: ignore[operator]
        finally:
            os._exit(0)
    return pid


def main() -> int:
    os.setpgrp()  # one group: the test stops every process with one signal
    lst = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    lst.bind(("::", 0))
    lst.listen(512)
    port = lst.getsockname()[1]
    pids = [fork(serve, lst) for _ in range(2)]
    pids += [fork(tcp_client, port, *(socket.AF_INET, "127.0.0.1") if i % 2 else (socket.AF_INET6, "::1"))
             for i in range(TCP_CLIENTS)]
    pids += [fork(udp_churner, *(socket.AF_INET, "127.0.0.1") if i % 2 else (socket.AF_INET6, "::1"))
             for i in range(UDP_CHURNERS)]
    time.sleep(0.5)
    print(f"READY {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
