"""The guest side of ``python -m vmtests demo``: a few listeners, then ss and drgn-ss.

Runs inside a vmtests guest: opens TCP listeners, prints ``ss -nlpt``, then
what drgn reads from the kernel's own listening table.
"""

from __future__ import annotations

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
    print("# ss -nlpt", flush=True)
    subprocess.run(["ss", "-nlpt"], check=False)
    script = REPO / "scripts" / "ss_nlpt.py"
    if script.exists():
        print("\n# drgn scripts/ss_nlpt.py", flush=True)
        return subprocess.run(["drgn", "--main-symbols", str(script)], check=False).returncode
    print("\n# drgn: listening TCP ports in the kernel's lhash2 table", flush=True)
    code = (
        "from drgn_ss.tables import net_tcp_hashinfo, sock_num, tcp_listening_socks\n"
        "h = net_tcp_hashinfo(prog['init_net'].address_of_())\n"
        "print(prog['init_uts_ns'].name.release.string_().decode(), "
        "sorted(sock_num(sk) for sk in tcp_listening_socks(h)))\n"
    )
    return subprocess.run(["drgn", "-q", "--main-symbols", "-e", code], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
