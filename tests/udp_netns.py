"""
Run ss over many UDP sockets, in the private network namespace this runs in
(``unshare -n python3 udp_netns.py N4 N6 SS_FLAGS``): N4 IPv4 sockets held by
processes named "a", then N6 IPv6 sockets on a long address held by one named
"a-much-longer-name". ss lists IPv4 before IPv6, so its last lines are its widest.
Prints ss's output.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys

n4, n6, flags = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "fd00:1234:5678:9abc::1/128", "dev", "lo", "nodad"], check=True)
PER = 15000  # sockets per process: the open-files limit is 20,000 here
groups = [[(socket.AF_INET, f"127.0.{i // 60000}.{1 + (i // 30000) % 2}", 1024 + i % 30000)
           for i in range(s, min(s + PER, n4))] for s in range(0, n4, PER)]
groups.append([(socket.AF_INET6, "fd00:1234:5678:9abc::1", 1024 + i) for i in range(n6)])
libc = ctypes.CDLL(None)
kids = []
r, w = os.pipe()
for g, specs in enumerate(groups):
    pid = os.fork()
    if pid == 0:
        name = b"a-much-longer-name" if g == len(groups) - 1 else b"a"
        libc.prctl(15, name, 0, 0, 0)  # PR_SET_NAME
        socks = []
        for fam, a, p in specs:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.bind((a, p))
            socks.append(s)
        os.write(w, b"x")
        signal.pause()
        os._exit(0)
    kids.append(pid)
for _ in kids:
    os.read(r, 1)
out = subprocess.run(["ss", flags], capture_output=True).stdout
for k in kids:
    os.kill(k, signal.SIGKILL)
    os.waitpid(k, 0)
sys.stdout.buffer.write(out)
