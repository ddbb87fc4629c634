"""The guest side of the kernel matrix: open sockets, describe them, print READY, wait.

Run inside a vmtests guest as ``SETUP`` for ``vmtests dump`` (and by the matrix
for its dump and ``drgn --qemu`` modes). It prints one JSON line describing the
workload, then ``READY``, then keeps its sockets open until the guest stops.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any


def open_listeners() -> list[socket.socket]:
    """TCP listeners on loopback, IPv4 and IPv6, on ports the kernel picks."""
    listeners = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(8)
        listeners.append(s)
    return listeners


def describe(listeners: list[socket.socket]) -> dict[str, Any]:
    """What the kernel should show of this workload: the JSON the tests read."""
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


def main() -> int:
    listeners = open_listeners()  # referenced until the guest stops: closed if collected
    info = describe(listeners)
    print("WORKLOAD " + json.dumps(info))
    print("READY", flush=True)
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
