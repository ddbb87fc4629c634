"""The guest side of ``python -m vmtests demo``: a few listeners, then ss and drgn-ss.

Runs inside a vmtests guest: opens TCP listeners, prints ``ss -nlpt`` and
``drgn scripts/ss_nlpt.py``, and says whether they are identical.
"""

from __future__ import annotations

import difflib
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    socks = []
    for family, addr, port in ((socket.AF_INET, "127.0.0.1", 8080), (socket.AF_INET6, "::", 8443),
                               (socket.AF_INET, "0.0.0.0", 2222)):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(16)
        socks.append(s)
    print(f"# kernel {os.uname().release}; listeners opened by pid {os.getpid()}\n", flush=True)
    ss = subprocess.run(["ss", "-nlpt"], capture_output=True, text=True).stdout
    print("# ss -nlpt\n" + ss, flush=True)
    script = REPO / "scripts" / "ss_nlpt.py"
    ours = subprocess.run(["drgn", "--main-symbols", str(script)], capture_output=True, text=True)
    print("# drgn scripts/ss_nlpt.py\n" + ours.stdout + ours.stderr, flush=True)
    if ours.returncode == 0 and ours.stdout == ss:
        print("# identical, byte for byte")
        return 0
    diff = difflib.unified_diff(ss.splitlines(), ours.stdout.splitlines(), "ss -nlpt",
                                "drgn scripts/ss_nlpt.py", lineterm="")
    print("# they differ:\n" + "\n".join(diff))
    return 1

if __name__ == "__main__":
    sys.exit(main())
