"""Sockets the kernel holds, with no process behind them: for tests of kernel-held sockets.

Run inside a vmtests guest, as root, by the workload (tests/kernel/workload.py), the repository on sys.path.
:func:`open_kernel_sockets` sets up, in a network namespace of its own
(:data:`NETNS`):

- a vxlan device (:data:`VXLAN_DEV`): the kernel's UDP socket on :data:`VXLAN_PORT`;
- a geneve device (:data:`GENEVE_DEV`): UDP :data:`GENEVE_PORT`;
- a fou receive port: UDP :data:`FOU_PORT`;
- the kernel NFS server, NFSv4 over TCP only: listeners on 2049, and the
  connection it accepts from
- an NFSv4 mount of its export over loopback: the sunrpc client's TCP socket.

The NFS userland (``exportfs``, ``rpc.mountd``, ``rpc.nfsd``) comes from
``vmtests.guest_tools.ensure_guest_tools()``, run on the host, whose root is passed
as ``tools_root``. ``rpc.mountd`` stays running (it answers the kernel's export
lookups), in a mount namespace of its own where a tmpfs replaces /var/lib, as the
guest's root is read-only. The nfsd filesystem (/proc/fs/nfsd) and the NFS mount
are made in the guest's own mount namespace, from inside the network namespace
(``nsenter --net``; ``ip netns exec`` would make them in a throwaway one).

Each piece is tried on its own; one the kernel or the tools cannot provide is
recorded as ``{"skipped": REASON}``. Nothing goes to stdout: progress and errors
go to stderr.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.kernel.guest_commands import run, tools_env

__all__ = [
    "EXPORT_DIR",
    "FOU_PORT",
    "GENEVE_DEV",
    "GENEVE_PORT",
    "MOUNT_DIR",
    "NETNS",
    "NFS_PORT",
    "VXLAN_DEV",
    "VXLAN_PORT",
    "close_kernel_sockets",
    "open_kernel_sockets",
]

NETNS = "drgnss-kern"
NETNS_PATH = f"/run/netns/{NETNS}"
VXLAN_DEV, VXLAN_ID, VXLAN_PORT = "dsvx0", 42, 4789
GENEVE_DEV, GENEVE_ID, GENEVE_PORT = "dsgnv0", 43, 6081
FOU_PORT = 5555
NFS_PORT = 2049
NFSD_THREADS = 2
EXPORT_DIR = "/tmp/drgnss-export"
MOUNT_DIR = "/tmp/drgnss-mnt"
NFSD_FS = "/proc/fs/nfsd"
#: Where rpc.mountd's log goes.
MOUNTD_LOG = "/tmp/drgnss-mountd.log"
EXPORT_OPTIONS = "rw,fsid=0,no_subtree_check,no_root_squash,insecure"

#: Run in the private mount namespace that rpc.mountd then keeps alive.
_NFSD_SCRIPT = """
set -e
mount -t tmpfs -o mode=755 drgnss-varlib /var/lib
mkdir -p /var/lib/nfs/v4recovery /var/lib/nfs/rpc_pipefs /var/lib/nfs/nfsdcld
: > /var/lib/nfs/etab; : > /var/lib/nfs/rmtab
# nfsdcld tracks NFSv4 clients (in a network namespace the only way the kernel has): with it
# and no client to reclaim, nfsd skips its grace period (else one in which opens wait). The
# kernel gives it 1 s to open its pipe once nfsd starts: started first, it is waiting by then.
if mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs && nfsdcld >> "$3" 2>&1; then :; else
	echo "nfsdcld did not start: a grace period follows" >&2
fi
exportfs -i -o "$1" "127.0.0.1:$2"
rpc.mountd -N 2 -N 3 >> "$3" 2>&1
rpc.nfsd -N 3 -V 4 --no-udp -G 10 "$4"
"""


def _log(msg: str) -> None:
    print(f"kernel_socks: {msg}", file=sys.stderr, flush=True)


def _in_netns(args: list[str]) -> list[str]:
    """``args`` in the namespace's network namespace, still in the guest's mount namespace."""
    return ["nsenter", f"--net={NETNS_PATH}", *args]


def _need(name: str, env: dict[str, str], hint: str) -> None:
    if not shutil.which(name, path=env.get("PATH")):
        raise RuntimeError(f"{name} not found{hint}")


def _step(truth: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]]) -> None:
    t0 = time.monotonic()
    try:
        truth[key] = fn()
    except Exception as e:  # one piece failing must not stop the others
        truth[key] = {"skipped": str(e)}
        _log(f"{key}: skipped: {e}")
        return
    _log(f"{key}: ready in {time.monotonic() - t0:.2f} s")


def _module_hint(module: str) -> str:
    return "" if os.path.isdir(f"/sys/module/{module}") else f" (no {module} module loaded)"


def _make_netns() -> int:
    if os.path.exists(NETNS_PATH):
        close_kernel_sockets()
    run(["ip", "netns", "add", NETNS])
    run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    return os.stat(NETNS_PATH).st_ino


def _tunnel(kind: str, dev: str, vni: int, port: int, extra: list[str]) -> dict[str, Any]:
    """A vxlan or geneve device, up: the kernel opens its UDP socket when the device opens."""
    try:
        run(["ip", "-n", NETNS, "link", "add", dev, "type", kind, "id", str(vni),
              *extra, "dstport", str(port)])
        run(["ip", "-n", NETNS, "link", "set", dev, "up"])
    except RuntimeError as e:
        raise RuntimeError(f"{e}{_module_hint(kind)}") from e
    return {"port": port, "dev": dev, "id": vni}


def _fou() -> dict[str, Any]:
    try:
        run(["ip", "-n", NETNS, "fou", "add", "port", str(FOU_PORT), "ipproto", "4"])
    except RuntimeError as e:
        raise RuntimeError(f"{e}{_module_hint('fou')}") from e
    return {"port": FOU_PORT, "ipproto": 4}


def _nfsd_pids(comm: str) -> list[int]:
    """Processes named ``comm`` in the namespace's network namespace."""
    want = os.stat(NETNS_PATH).st_ino
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != comm:
                    continue
            if os.stat(f"/proc/{d}/ns/net").st_ino == want:
                out.append(int(d))
        except OSError:
            continue
    return out


def _nfsd(env: dict[str, str]) -> dict[str, Any]:
    """The kernel NFS server, NFSv4 over TCP only, exporting a tmpfs to 127.0.0.1."""
    for tool in ("exportfs", "rpc.mountd", "rpc.nfsd"):
        _need(tool, env, " (pass tools_root = str(vmtests.guest_tools.ensure_guest_tools()))")
    if not os.path.isdir(NFSD_FS):
        raise RuntimeError(f"no {NFSD_FS}{_module_hint('nfsd')}")
    os.makedirs(EXPORT_DIR, exist_ok=True)
    if not os.path.ismount(EXPORT_DIR):
        run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "drgnss-export", EXPORT_DIR])
    with open(os.path.join(EXPORT_DIR, "hello"), "w") as f:
        f.write("hello from the kernel NFS server\n")
    run(_in_netns(["mount", "-t", "nfsd", "nfsd", NFSD_FS]))
    run(_in_netns(["unshare", "--mount", "--propagation", "private", "sh", "-c", _NFSD_SCRIPT, "sh",
                    EXPORT_OPTIONS, EXPORT_DIR, MOUNTD_LOG, str(NFSD_THREADS)]), env=env)
    with open(os.path.join(NFSD_FS, "v4_end_grace")) as f:
        grace_ended = f.read().strip() == "Y"
    with open(os.path.join(NFSD_FS, "threads")) as f:
        threads = int(f.read().strip() or 0)
    if threads <= 0:
        raise RuntimeError(f"rpc.nfsd ran but {NFSD_FS}/threads is {threads}")
    with open(os.path.join(NFSD_FS, "versions")) as f:
        versions = f.read().split()
    mountd = _nfsd_pids("rpc.mountd")
    return {"port": NFS_PORT, "threads": threads, "versions": versions, "export": EXPORT_DIR,
            "mountd_pid": mountd[0] if mountd else None,
            "nfsdcld_pid": next(iter(_nfsd_pids("nfsdcld")), None), "grace_ended": grace_ended}


def _nfs_client() -> dict[str, Any]:
    """An NFSv4 mount of the export over loopback: the kernel's sunrpc client socket.

    util-linux mount with -i (no mount.nfs helper) and the addresses given: the kernel
    parses the options itself.
    """
    os.makedirs(MOUNT_DIR, exist_ok=True)
    errors = []
    for vers in ("4.2", "4.1"):
        opts = f"vers={vers},proto=tcp,port={NFS_PORT},addr=127.0.0.1,clientaddr=127.0.0.1"
        try:
            run(_in_netns(["mount", "-i", "-t", "nfs4", "-o", opts, "127.0.0.1:/", MOUNT_DIR]), timeout=90)
        except RuntimeError as e:
            errors.append(f"vers={vers}: {e}")
            continue
        return {"server": f"127.0.0.1:{NFS_PORT}", "mount": MOUNT_DIR, "vers": vers}
    raise RuntimeError("; ".join(errors) + _module_hint("nfsv4"))


def _hex_addr(text: str) -> str:
    """``0100007F:0801`` (or its 32-hex-digit IPv6 form) from /proc/net/* as ``127.0.0.1:2049``."""
    addr, port = text.split(":")
    raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, len(addr), 8))
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in raw)}:{int(port, 16)}"
    return f"[{ipaddress.IPv6Address(raw)}]:{int(port, 16)}"


def _netns_sockets() -> list[tuple[str, str, str, int]]:
    """(protocol, local, remote, state) of each UDP and TCP socket in the namespace."""
    script = 'for f in udp udp6 tcp tcp6; do echo "@$f"; cat /proc/net/$f; done'
    out = []
    proto = ""
    for line in run(_in_netns(["sh", "-c", script])).splitlines():
        fields = line.split()
        if line.startswith("@"):
            proto = line[1:].rstrip("6")
        elif len(fields) > 3 and fields[0].endswith(":"):
            out.append((proto, _hex_addr(fields[1]), _hex_addr(fields[2]), int(fields[3], 16)))
    return out


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def _check(truth: dict[str, Any]) -> None:
    """Check each piece's sockets are there; a piece whose sockets are not is skipped."""
    socks = _netns_sockets()
    for key in ("vxlan", "geneve", "fou"):
        info = truth.get(key, {})
        if "port" in info and not any(p == "udp" and _port(loc) == info["port"] for p, loc, _, _ in socks):
            truth[key] = {"skipped": f"set up, but no UDP socket on port {info['port']}"}
    nfsd = truth.get("nfsd", {})
    if "port" in nfsd:
        nfsd["listen"] = [loc for p, loc, _, st in socks
                          if p == "tcp" and st == 10 and _port(loc) == NFS_PORT]
        nfsd["accepted"] = [[loc, rem] for p, loc, rem, st in socks if p == "tcp" and st == 1
                            and _port(loc) == NFS_PORT]
        if not nfsd["listen"]:
            truth["nfsd"] = {"skipped": f"nfsd started, but nothing listens on TCP {NFS_PORT}"}
    client = truth.get("nfs_client", {})
    if "server" in client:
        local = [loc for p, loc, rem, st in socks if p == "tcp" and rem == client["server"] and st == 1]
        if local:
            client["local"] = local[0]
        else:
            truth["nfs_client"] = {"skipped": f"mounted, but no connection to {client['server']}"}


def open_kernel_sockets(tools_root: str | None) -> dict[str, Any]:
    """Set up the kernel-held sockets in namespace :data:`NETNS`; return what was made."""
    t0 = time.monotonic()
    env = tools_env(tools_root)
    truth: dict[str, Any] = {"netns": NETNS}
    try:
        truth["netns_inode"] = _make_netns()
    except Exception as e:
        reason = f"no network namespace: {e}"
        _log(reason)
        return {**truth, **{k: {"skipped": reason} for k in ("vxlan", "geneve", "fou", "nfsd", "nfs_client")}}
    _step(truth, "vxlan", lambda: _tunnel("vxlan", VXLAN_DEV, VXLAN_ID, VXLAN_PORT, []))
    _step(truth, "geneve",
          lambda: _tunnel("geneve", GENEVE_DEV, GENEVE_ID, GENEVE_PORT, ["remote", "127.0.0.1"]))
    _step(truth, "fou", _fou)
    _step(truth, "nfsd", lambda: _nfsd(env))
    if "skipped" in truth["nfsd"]:
        truth["nfs_client"] = {"skipped": "no NFS server"}
    else:
        _step(truth, "nfs_client", _nfs_client)
    try:
        _check(truth)
    except Exception as e:
        _log(f"cannot list the namespace's sockets to check them: {e}")
    truth["seconds"] = round(time.monotonic() - t0, 2)
    return truth


def _quiet(args: list[str]) -> None:
    try:
        run(args, timeout=30)
    except RuntimeError as e:
        _log(f"close: {e}")


def close_kernel_sockets() -> None:
    """Undo :func:`open_kernel_sockets`, best effort."""
    if os.path.ismount(MOUNT_DIR):
        _quiet(["umount", "-f", "-l", MOUNT_DIR])
    if os.path.exists(NETNS_PATH):
        for pid in _nfsd_pids("rpc.mountd") + _nfsd_pids("nfsdcld"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    if os.path.exists(os.path.join(NFSD_FS, "threads")):
        try:
            with open(os.path.join(NFSD_FS, "threads"), "w") as f:
                f.write("0")
        except OSError as e:
            _log(f"close: stopping nfsd: {e}")
        _quiet(["umount", NFSD_FS])
    if os.path.ismount(EXPORT_DIR):
        _quiet(["umount", "-l", EXPORT_DIR])
    if os.path.exists(NETNS_PATH):
        _quiet(["ip", "netns", "del", NETNS])


if __name__ == "__main__":
    import json

    result = open_kernel_sockets(sys.argv[1] if len(sys.argv) > 1 else None)
    print(json.dumps(result, indent=1))
    if "--close" in sys.argv:
        close_kernel_sockets()
