"""A process (``ss-fleet``) in a network namespace of its own that moves known bytes when told:
``send N`` sends N bytes over a connection it holds open (both ends its own), ``churn K M``
opens K connections in turn, each moving M bytes and closed at once. It prints a JSON line
(its pid and namespace inode) when ready and ``done`` after each command, and ends when its
stdin does. Run by tests/kernel/test_fleet.py: ``python -m tests.kernel.fleet_traffic``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys

CLONE_NEWNET = 0x40000000


def _pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return client, server


def _move(client: socket.socket, server: socket.socket, n: int) -> None:
    chunk = b"x" * 65536
    sent = got = 0
    server.setblocking(False)
    while got < n:
        if sent < n:
            sent += client.send(chunk[: min(len(chunk), n - sent)])
        with contextlib.suppress(BlockingIOError):
            got += len(server.recv(1 << 20))
    server.setblocking(True)


def main() -> None:
    ctypes.CDLL(None).prctl(15, b"ss-fleet", 0, 0, 0)  # PR_SET_NAME
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    client, server = _pair(listener)
    print(json.dumps({"pid": os.getpid(), "netns": os.stat("/proc/self/ns/net").st_ino}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["send"]:
            _move(client, server, int(words[1]))
        elif words[:1] == ["churn"]:
            for _ in range(int(words[1])):
                c, s = _pair(listener)
                _move(c, s, int(words[2]))
                c.close()
                s.close()
        print("done", flush=True)


if __name__ == "__main__":
    main()
