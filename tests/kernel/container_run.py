"""A real OCI container, as docker makes them, for tests of container-aware output.

Run inside a vmtests guest, as root, by the workload (tests/kernel/workload.py), the repository on sys.path.
:func:`start_container` runs Debian's crun (from
``vmtests.guest_tools.ensure_guest_tools()``, run on the host, whose root is passed
as ``tools_root``) with a bundle made here: new network, pid, mount, ipc and uts
namespaces, a read-only root filesystem made of the host's own directories
(bind-mounted read-only), and the cgroup docker's cgroupfs driver uses,
``/docker/<id>``. The container's process listens on TCP ``0.0.0.0:PORT`` in its
own network namespace and stays. Loopback is brought up in the container's
namespace before it starts.

Nothing goes to stdout: progress and errors go to stderr, the container's
output to a log file in its bundle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from tests.kernel.guest_commands import run, tools_env

__all__ = ["BUNDLES", "DEFAULT_ID", "start_container", "stop_container"]

DEFAULT_ID = "5ca1ab1e" * 8
#: Where the bundles go, one directory per container id.
BUNDLES = "/run/drgnss-containers"
#: crun's own state directory (its default for root).
CRUN_ROOT = "/run/crun"
#: Host directories the container sees, read-only, where they are real directories
#: (a symlink, as /bin is on a merged-/usr system, is copied as a symlink).
HOST_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

#: The container's process: accept and close connections forever.
LISTENER = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1])))\n"
    "s.listen(16)\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)


def _log(msg: str) -> None:
    print(f"container_run: {msg}", file=sys.stderr, flush=True)


def _rootfs(bundle: str) -> tuple[str, list[dict[str, Any]]]:
    """The rootfs directory, with symlinks and mount points; the bind mounts of the host's dirs."""
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    binds = []
    for d in HOST_DIRS:
        target = os.path.join(rootfs, d.lstrip("/"))
        if os.path.islink(d):
            os.symlink(os.readlink(d), target)
        elif os.path.isdir(d):
            os.mkdir(target)
            binds.append({"destination": d, "type": "bind", "source": d,
                          "options": ["rbind", "ro", "nosuid", "nodev"]})
    for d in ("proc", "sys", "dev", "tmp", "run"):
        os.mkdir(os.path.join(rootfs, d))
    return rootfs, binds


def _config(ident: str, port: int, binds: list[dict[str, Any]]) -> dict[str, Any]:
    """An OCI runtime config: namespaces, mounts, docker's cgroup path, the listener."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=755"]},
        *binds,
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [sys.executable if sys.executable.startswith("/usr/") else "/usr/bin/python3",
                     "-S", "-c", LISTENER, str(port)],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE=1"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": f"drgnss-{ident[:12]}",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "mount", "ipc", "uts")],
            "cgroupsPath": f"/docker/{ident}",
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
        },
    }


def _listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid``."""
    want = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want) and fields[3] == "0A":
                        return True
        except (OSError, StopIteration):
            continue
    return False


def _wait_listening(pid: int, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(pid, port):
        if not os.path.exists(f"/proc/{pid}"):
            raise RuntimeError(f"the container's process {pid} exited before it listened")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on TCP {port} in the container after {timeout:.0f} s")
        time.sleep(0.05)


def _crun(*args: str) -> list[str]:
    return ["crun", f"--root={CRUN_ROOT}", "--cgroup-manager=cgroupfs", *args]


def _launch(env: dict[str, str], ident: str, bundle: str) -> int:
    """crun create, loopback up in the container's namespace, crun start: the container's pid."""
    pid_file = os.path.join(bundle, "pid")
    with open(os.path.join(bundle, "container.log"), "ab") as log:
        proc = subprocess.run(_crun("create", f"--bundle={bundle}", f"--pid-file={pid_file}", ident),
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, timeout=60)
    if proc.returncode != 0:
        with open(os.path.join(bundle, "container.log")) as f:
            tail = (f.read().strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RuntimeError(f"crun create: {tail}")
    with open(pid_file) as f:
        pid = int(f.read().strip())
    run(["nsenter", "-t", str(pid), "-n", "ip", "link", "set", "lo", "up"])
    run(_crun("start", ident), env=env)
    return pid


def start_container(tools_root: str | None, ident: str = DEFAULT_ID, port: int = 8080) -> dict[str, Any]:
    """Start the container; what it is, or ``{"skipped": REASON}``."""
    t0 = time.monotonic()
    env = tools_env(tools_root)
    try:
        if not shutil.which("crun", path=env.get("PATH")):
            raise RuntimeError(
                "crun not found (pass tools_root = str(vmtests.guest_tools.ensure_guest_tools()))")
        stop_container(ident, tools_root)
        bundle = os.path.join(BUNDLES, ident)
        _rootfs_dir, binds = _rootfs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(_config(ident, port, binds), f, indent=1)
        pid = _launch(env, ident, bundle)
        _wait_listening(pid, port)
        with open(f"/proc/{pid}/cgroup") as f:
            cgroup = f.read().strip().rsplit(":", 1)[-1]
        truth = {
            "id": ident,
            "pid": pid,
            "cgroup": cgroup,
            "port": port,
            "netns_inode": os.stat(f"/proc/{pid}/ns/net").st_ino,
            "pidns_inode": os.stat(f"/proc/{pid}/ns/pid").st_ino,
            "mntns_inode": os.stat(f"/proc/{pid}/ns/mnt").st_ino,
            "bundle": bundle,
            "seconds": round(time.monotonic() - t0, 2),
        }
    except Exception as e:  # the caller skips its tests with the reason
        _log(f"skipped: {e}")
        return {"skipped": str(e)}
    if cgroup != f"/docker/{ident}":
        _log(f"the container's cgroup is {cgroup}, not /docker/{ident}")
    _log(f"container {ident[:12]} pid {pid} listening on {port} in {truth['seconds']} s")
    return truth


def stop_container(ident: str = DEFAULT_ID, tools_root: str | None = None) -> None:
    """Kill and delete the container and its bundle, best effort."""
    env = tools_env(tools_root)
    if os.path.exists(os.path.join(CRUN_ROOT, ident)) and shutil.which("crun", path=env.get("PATH")):
        try:
            run(_crun("delete", "--force", ident), env=env)
        except RuntimeError as e:
            _log(f"stop: {e}")
    shutil.rmtree(os.path.join(BUNDLES, ident), ignore_errors=True)
    with contextlib.suppress(OSError):  # docker's parent cgroup, once no container is left in it
        os.rmdir("/sys/fs/cgroup/docker")


if __name__ == "__main__":
    print(json.dumps(start_container(sys.argv[1] if len(sys.argv) > 1 else None)))
