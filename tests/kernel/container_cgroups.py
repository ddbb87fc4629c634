"""The guest side of --containers: a process in a cgroup laid out exactly as each container
runtime, Kubernetes (both cgroup drivers, every QoS class) and systemd name theirs
(tests/container_paths.py's VECTORS), each holding a TCP listener, all in a network
namespace of their own (so that the listings the rest of the matrix compares with ss do
not change)."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
from typing import Any

from tests.container_paths import VECTORS
from tests.kernel.guest_commands import fork_holder

NETNS = "drgnss-ctr"
#: The listener of VECTORS[i] is on 127.0.0.1:BASE_PORT + i.
BASE_PORT = 7100
CGROUP_ROOT = "/sys/fs/cgroup"
CLONE_NEWNET = 0x40000000


def open_container_cgroups() -> dict[str, Any]:
    """
    Start one process per layout; the truth: {"netns_inode", "processes": [{"pid", "port",
    "path"}...]}, or {"skipped": why} where there is no cgroup2 to make them in.
    """
    if not os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        return {"skipped": "no cgroup2 mounted"}
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
    netns_file = f"/run/netns/{NETNS}"
    processes = []
    for i, (path, _expected) in enumerate(VECTORS):
        os.makedirs(CGROUP_ROOT + path, exist_ok=True)
        port = BASE_PORT + i
        processes.append({"pid": _holder(netns_file, CGROUP_ROOT + path, port), "port": port, "path": path})
    return {"netns": NETNS, "netns_inode": os.stat(netns_file).st_ino, "processes": processes}


def _holder(netns_file: str, cgroup: str, port: int) -> int:
    """Fork a process that enters the namespace and the cgroup, then listens on ``port``."""
    def make() -> tuple[bytes, socket.socket]:
        libc = ctypes.CDLL(None, use_errno=True)
        ns = os.open(netns_file, os.O_RDONLY)
        if libc.setns(ns, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(ns)
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.listen(4)
        return b"ok", s

    pid, report = fork_holder(make)
    if report != b"ok":
        raise RuntimeError(f"{cgroup}: the listener could not be opened")
    return pid
