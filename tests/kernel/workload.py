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


def main() -> int:
    listeners = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(8)
        listeners.append(s)
    info = {
        "release": os.uname().release,
        "pid": os.getpid(),
        "listeners": [
            {"family": "inet6" if s.family == socket.AF_INET6 else "inet",
             "addr": s.getsockname()[0], "port": s.getsockname()[1],
             "ino": os.fstat(s.fileno()).st_ino}
            for s in listeners
        ],
    }
    print("WORKLOAD " + json.dumps(info))
    print("READY", flush=True)
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
