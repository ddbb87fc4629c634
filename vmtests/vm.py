"""Boot a kernel under QEMU with the host's files shared read-only, run a command, take dumps.

The guest's channels are serial ports, each a Unix socket the host listens on:
ttyS0 is the console (kernel log, and the command's exit status as
``@@vmtests-exit N``), ttyS1 the command's stdout and ttyS2 its stderr. QMP on
``qmp.sock`` is ours (dumps, quit); ``qmp-user.sock`` is left for
``drgn --qemu``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtests import VMTestError
from vmtests.config import REPO, cache_dir
from vmtests.initramfs import build_initramfs
from vmtests.kdump import unflatten
from vmtests.kernels import Kernel
from vmtests.qmp import QMP

VIRTIOFSD_CANDIDATES = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd")
EXIT_RE = re.compile(rb"@@vmtests-exit (\d+)")
#: Host environment variables not passed to the guest command.
ENV_DROP = re.compile(r"^(SSH_|DISPLAY$|WAYLAND_|XDG_RUNTIME_DIR$|DBUS_|TMUX|STY$|OLDPWD$|PWD$)")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: kill the child if vmtests dies, so no QEMU or virtiofsd is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def find_qemu() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise VMTestError(
            "qemu-system-x86_64 not found: apt-get install --no-install-recommends qemu-system-x86"
        )
    return qemu


def find_virtiofsd() -> str:
    for candidate in VIRTIOFSD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("virtiofsd")
    if found:
        return found
    raise VMTestError("virtiofsd not found: apt-get install --no-install-recommends qemu-system-x86")


def tmp_binds(paths: Sequence[Path | str]) -> list[str]:
    """Top-level directories under /tmp that must stay visible over the guest's tmpfs /tmp."""
    out: list[str] = []
    for p in paths:
        parts = Path(os.path.abspath(p)).parts
        if len(parts) >= 3 and parts[1] == "tmp":
            top = "/tmp/" + parts[2]
            if top not in out:
                out.append(top)
    return out


def guest_script(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    """The shell script the guest runs: change directory, set the environment, exec."""
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    return (
        f"cd {shlex.quote(cwd)} || exit 125\n"
        f"exec /usr/bin/env -i {assigns} {' '.join(shlex.quote(a) for a in argv)}\n"
    )


def guest_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the guest command: the host's, with the project's venv first on PATH."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if not ENV_DROP.match(k)}
    venv_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = venv_bin + ":" + env.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    for d in ("/usr/sbin", "/sbin"):
        if d not in env["PATH"].split(":"):
            env["PATH"] += ":" + d
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("HOME", "/root")
    return env


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def kvm_works(kernel: Kernel, qemu: str) -> bool:
    """Whether KVM can boot a Debian kernel on this host (cached per host boot).

    /dev/kvm can exist and still fail: in a nested guest QEMU aborts (``failed to
    set MSR``) or hangs. Probe by booting the kernel with no root until it panics.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    stamp = cache_dir() / "kvm-probe"
    boot_id = _boot_id()
    try:
        verdict, seen_boot = stamp.read_text().split()
        if seen_boot == boot_id:
            return verdict == "kvm"
    except (OSError, ValueError):
        pass
    cmd = [
        qemu, "-nodefaults", "-display", "none", "-no-reboot", "-accel", "kvm", "-cpu", "host",
        "-m", "256", "-serial", "stdio", "-kernel", str(kernel.vmlinuz),
        "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
    ]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20,
                              stdin=subprocess.DEVNULL)
        ok = b"Kernel panic" in proc.stdout or b"VFS:" in proc.stdout
    except subprocess.TimeoutExpired:
        ok = False
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{'kvm' if ok else 'tcg'} {boot_id}\n")
    if not ok:
        print("vmtests: KVM does not work on this host; using TCG emulation", file=sys.stderr)
    return ok


def _prune(runs: Path, max_age: float = 7 * 86400) -> None:
    """Remove the logs that failed runs kept, after a week."""
    now = time.time()
    for d in runs.iterdir():
        with contextlib.suppress(OSError):
            if now - d.stat().st_mtime > max_age:
                shutil.rmtree(d, ignore_errors=True)


#: makedumpfile's compression flags (Debian's kdump-tools uses -c: zlib).
COMPRESS_FLAGS = {"zlib": "-c", "lzo": "-l", "zstd": "-z", "none": ""}
PANIC_PID_RE = re.compile(rb"@@vmtests-panic-pid (\d+)")
INIT_LINE = b"@@vmtests-init"
# Boots that die before init.sh starts are tried again, this many times in all. Multi-threaded
# TCG now and then misses an instruction patch on another vCPU and the kernel oopses in early
# boot ("Oops: int3" in an initcall, seen once in ~100 boots of 6.12, and in 3 of ~10 boots
# of 7.2 on a loaded 2-core machine, twice in a row once); the next boot is fine. A failed
# boot costs ~3 s.
BOOT_ATTEMPTS = 5
BOOT_TIMEOUT = 120.0


@dataclass(frozen=True)
class CrashOptions:
    """
    A guest that panics on request and saves kdumps through makedumpfile: one per (dump
    level, compression) in ``dumps``, all from the same panic, each through a scratch disk
    of its own.
    """

    dumps: tuple[tuple[int, str], ...] = ((31, "zlib"),)
    #: Memory reserved for the capture kernel (crashkernel=).
    reserve: str = "256M"


def makedumpfile_supports(compress: str) -> bool:
    """Whether the host's makedumpfile was built with a compression (1.7.2 lacks zstd)."""
    if compress in ("zlib", "none"):
        return True
    exe = shutil.which("makedumpfile")
    if not exe:
        return False
    out = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout
    return bool(re.search(rf"^{compress}\s+enabled", out, re.M))


Sink = Callable[[bytes], None]


def _writer(stream: object) -> Sink:
    buf = getattr(stream, "buffer", stream)

    def write(data: bytes) -> None:
        buf.write(data)  # type: ignore[attr-defined]
        buf.flush()  # type: ignore[attr-defined]

    return write


class Guest:
    """A QEMU guest running one command. Use as a context manager: closing kills everything."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        memory_mb: int = 2048,
        cpus: int = 2,
        accel: str = "auto",
        verbose: bool = False,
        debuginfo: bool = True,
        crash: CrashOptions | None = None,
    ) -> None:
        self.kernel = kernel
        self.crash = crash
        self.panic_pid: int | None = None
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.accel = accel
        self.verbose = verbose
        self.debuginfo = debuginfo
        runs = cache_dir() / "run"
        runs.mkdir(parents=True, exist_ok=True)
        _prune(runs)
        self.run_dir = Path(tempfile.mkdtemp(prefix="vm-", dir=runs))
        self.qemu: subprocess.Popen[bytes] | None = None
        self.virtiofsd: subprocess.Popen[bytes] | None = None
        self._listeners: dict[str, socket.socket] = {}
        self._conns: dict[str, socket.socket] = {}
        self._pump: threading.Thread | None = None
        self._qmp: QMP | None = None
        self.console_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.stdout_lines: list[str] = []
        self.exit_code: int | None = None
        self.booted = threading.Event()
        self.boot_failures: list[str] = []
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.stdout_sink: Sink = _writer(sys.stdout)
        self.stderr_sink: Sink = _writer(sys.stderr)

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def user_qmp(self) -> Path:
        """A QMP socket for other clients, such as ``drgn --qemu``."""
        return self.run_dir / "qmp-user.sock"

    def _start_virtiofsd(self) -> Path:
        sock = self.run_dir / "virtiofs.sock"
        root = self.run_dir / "root"
        root.mkdir()
        # A private mount namespace holds a recursive, read-only bind of /: the guest
        # mounts the share read-write, and every write fails on the host side.
        script = r"""
set -e
root=$1; shift
mount --rbind / "$root"
for m in $(awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo); do
    mount -o remount,bind,ro "$m"
done
if touch "$root/.vmtests-rw-probe" 2>/dev/null; then
    echo "vmtests: could not make the shared root read-only" >&2
    exit 1
fi
exec "$@"
"""
        cmd = [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            str(root), find_virtiofsd(), f"--socket-path={sock}", "-o", f"source={root}",
            "-o", "cache=always", "-o", "sandbox=chroot",
        ]
        with open(self.run_dir / "virtiofsd.log", "wb") as log:
            self.virtiofsd = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + 10
        while not sock.exists():
            if self.virtiofsd.poll() is not None or time.monotonic() > deadline:
                text = (self.run_dir / "virtiofsd.log").read_text(errors="replace").strip()
                raise VMTestError(f"virtiofsd did not start: {text or 'no output'}")
            time.sleep(0.02)
        return sock

    def _listen(self, name: str) -> Path:
        path = self.run_dir / f"{name}.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.listen(1)
        self._listeners[name] = s
        return path

    def _accel(self, qemu: str) -> str:
        if self.accel == "auto":
            return "kvm" if kvm_works(self.kernel, qemu) else "tcg"
        return self.accel

    def qemu_command(self, qemu: str, accel: str, vfs_sock: Path, shell: bool, initrd: Path) -> list[str]:
        mem = f"{self.memory_mb}M"
        cmd = [
            qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-name", "vmtests",
            "-machine", f"q35,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(self.cpus), "-m", mem,
            "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
            "-numa", "node,memdev=mem",
            "-chardev", f"socket,id=vfs,path={vfs_sock}",
            "-device", "vhost-user-fs-pci,chardev=vfs,tag=host",
            "-device", "vmcoreinfo",
            "-qmp", f"unix:{self.run_dir / 'qmp.sock'},server=on,wait=off",
            "-qmp", f"unix:{self.user_qmp},server=on,wait=off",
        ]
        if shell:
            cmd += ["-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
            cmd += ["-chardev", "null,id=out", "-serial", "chardev:out"]
            cmd += ["-chardev", "null,id=err", "-serial", "chardev:err"]
        else:
            channels = ["console", "stdout", "stderr"] + (["control"] if self.crash else [])
            for name in channels:
                path = self._listen(name)
                cmd += ["-chardev", f"socket,id={name},path={path}", "-serial", f"chardev:{name}"]
        for disk in self.scratch_disks:
            cmd += ["-drive", f"file={disk},if=virtio,format=raw"]
        binds = tmp_binds([os.getcwd(), REPO, self.run_dir, self.kernel.dir])
        append = [
            "console=ttyS0", "8250.nr_uarts=4", "panic=-1", "oops=panic", "loglevel=4",
            "rdinit=/init", "VMTEST_TAG=host", f"VMTEST_RUN={self.run_dir}",
            f"VMTEST_MODE={'shell' if shell else 'run'}",
        ]
        if self.debuginfo:
            append.append(f"VMTEST_VMLINUX={self.kernel.vmlinux}")
            if self.kernel.module_debug:
                append.append("VMTEST_MODULE_DEBUG=" + ":".join(map(str, self.kernel.module_debug)))
        if binds:
            append.append("VMTEST_TMPBINDS=" + ":".join(binds))
        if self.crash:
            append += [f"crashkernel={self.crash.reserve}", "VMTEST_CRASH=1"]
            self._write_crash_scripts(initrd, binds)
        cmd += ["-kernel", str(self.kernel.boot_image()), "-initrd", str(initrd), "-append", " ".join(append)]
        return cmd

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        shell: bool = False,
    ) -> None:
        """Boot the guest and run ``argv`` in it (``shell``: interactively on this terminal)."""
        qemu = find_qemu()
        cwd = cwd or os.getcwd()
        for p in (self.run_dir, cwd):
            if " " in str(p):
                raise VMTestError(f"paths with spaces are not supported in the guest: {p}")
        (self.run_dir / "cmd.sh").write_text(guest_script(argv, cwd, guest_env(env)))
        initrd = build_initramfs(self.kernel, self.run_dir / "initramfs.cpio")
        accel = self._accel(qemu)
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            self._launch(qemu, accel, shell, initrd)
            if shell or self._await_boot():
                return
            first = next((line for line in self.console_tail
                          if "Oops" in line or "BUG" in line or "panic" in line),
                         self.console_tail[-1] if self.console_tail else "no console output")
            self.boot_failures.append(first.strip())
            if attempt == BOOT_ATTEMPTS:
                self._keep_log = True
                raise self._failure(f"the guest kernel died while booting, {BOOT_ATTEMPTS} times")
            print(f"vmtests: the guest kernel died while booting ({first.strip()}); "
                  f"booting again ({attempt + 1} of {BOOT_ATTEMPTS})", file=sys.stderr)
            self._stop()

    def _launch(self, qemu: str, accel: str, shell: bool, initrd: Path) -> None:
        """Start virtiofsd and QEMU, and (unless ``shell``) connect the serial channels."""
        vfs_sock = self._start_virtiofsd()
        cmd = self.qemu_command(qemu, accel, vfs_sock, shell, initrd)
        (self.run_dir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
        with open(self.run_dir / "qemu.log", "wb") as qemu_log:
            self.qemu = subprocess.Popen(
                cmd,
                stdin=None if shell else subprocess.DEVNULL,
                stdout=None if shell else qemu_log,
                stderr=qemu_log,
                preexec_fn=_die_with_parent,
            )
        if shell:
            return
        for name, listener in self._listeners.items():
            listener.settimeout(1.0)
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except socket.timeout:
                    if self.qemu.poll() is not None or time.monotonic() > deadline:
                        raise VMTestError(f"QEMU did not start: {self._qemu_log()}") from None
            conn.setblocking(False)
            self._conns[name] = conn
            listener.close()
        self._pump = threading.Thread(target=self._pump_loop, name="vmtests-pump", daemon=True)
        self._pump.start()

    def _await_boot(self) -> bool:
        """Wait for init.sh's first line: True once it came, False if the guest died first."""
        assert self.qemu is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not self.booted.wait(0.05):
            if self.qemu.poll() is not None:
                if self._pump is not None:
                    self._pump.join(timeout=5)
                return self.booted.is_set()
            if time.monotonic() > deadline:
                self._keep_log = True
                raise self._failure(f"the guest kernel did not start init within {BOOT_TIMEOUT:.0f} s")
        return True

    def _stop(self) -> None:
        """Stop QEMU and virtiofsd and forget the channels, so that the guest can boot again."""
        self._terminate()
        self._listeners.clear()
        self._conns.clear()
        self._pump = None
        self.qemu = self.virtiofsd = None
        with contextlib.suppress(OSError):
            (self.run_dir / "root").rmdir()  # virtiofsd's mount point, made again at the next boot
        for sock in self.run_dir.glob("*.sock"):
            sock.unlink(missing_ok=True)
        self.console_tail.clear()
        self.stdout_lines.clear()
        self.exit_code = self.panic_pid = None
        for event in (self.booted, self.ready, self.finished):
            event.clear()

    def _terminate(self) -> None:
        """Stop QEMU and virtiofsd, close the channels and let the pump thread end."""
        for proc in (self.qemu, self.virtiofsd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for s in list(self._listeners.values()) + list(self._conns.values()):
            s.close()
        if self._pump is not None:
            self._pump.join(timeout=5)

    def _qemu_log(self) -> str:
        try:
            text = (self.run_dir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text.splitlines()[-1] if text else "no output"

    # -- the channels -------------------------------------------------------

    def _pump_loop(self) -> None:
        sel = selectors.DefaultSelector()
        for name, conn in self._conns.items():
            if name != "control":  # written by the host, never read
                sel.register(conn, selectors.EVENT_READ, name)
        partial = {"console": b"", "stdout": b""}
        try:
            with open(self.run_dir / "console.log", "wb") as console_log:
                while sel.get_map():
                    for key, _ in sel.select(timeout=0.5):
                        data = self._recv(key.fileobj)
                        if data is None:
                            continue
                        if not data:
                            sel.unregister(key.fileobj)
                            continue
                        name = key.data
                        if name == "stderr":
                            self.stderr_sink(data)
                            continue
                        if name == "stdout":
                            self.stdout_sink(data)
                        else:
                            console_log.write(data)
                            console_log.flush()
                            if self.verbose:
                                self.stderr_sink(data)
                        lines = (partial[name] + data).split(b"\n")
                        partial[name] = lines.pop()
                        for raw in lines:
                            self._line(name, raw.rstrip(b"\r"))
        finally:
            for name, rest in partial.items():
                if rest:
                    self._line(name, rest)
            self.finished.set()

    @staticmethod
    def _recv(conn: object) -> bytes | None:
        """Data from a channel; b"" at its end; None when there is nothing yet."""
        assert isinstance(conn, socket.socket)
        try:
            return conn.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _line(self, channel: str, raw: bytes) -> None:
        if channel == "stdout":
            text = raw.decode(errors="replace")
            self.stdout_lines.append(text)
            if text.strip() == "READY":
                self.ready.set()
            return
        text = raw.decode(errors="replace")
        if raw == INIT_LINE:
            self.booted.set()
            return
        m = PANIC_PID_RE.search(raw)
        if m:
            self.panic_pid = int(m.group(1))
        m = EXIT_RE.search(raw)
        if m:
            self.exit_code = int(m.group(1))
            self.finished.set()
            return
        self.console_tail.append(text)

    def _console(self) -> str:
        return "\n".join(f"  | {line}" for line in self.console_tail) or "  (no console output)"

    def _failure(self, what: str) -> VMTestError:
        return VMTestError(
            f"{what}; the guest console ended with:\n{self._console()}\n"
            f"(full log: {self.run_dir / 'console.log'}, kept)"
        )

    # -- waiting ------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to finish and the guest to power off; return its exit status."""
        assert self.qemu is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._pump is None:  # shell mode: QEMU owns the terminal
            try:
                return self.qemu.wait(timeout)
            except subprocess.TimeoutExpired:
                raise VMTestError(f"the guest did not finish within {timeout:.0f} s") from None
        while self.qemu.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                self._keep_log = True
                raise self._failure(f"the guest did not finish within {timeout:.0f} s (killed)")
            time.sleep(0.05)
        self._pump.join(timeout=10)
        if self.exit_code is None:
            self._keep_log = True
            raise self._failure(f"the guest stopped without an exit status ({self._qemu_log()})")
        return self.exit_code

    def wait_ready(self, timeout: float) -> list[str]:
        """Wait until the command prints a line ``READY``; return its stdout lines before it."""
        assert self.qemu is not None
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.exit_code is not None or self.qemu.poll() is not None:
                self._keep_log = True
                status = self.exit_code if self.exit_code is not None else "unknown"
                raise self._failure(f"the setup command exited (status {status}) before READY")
            if time.monotonic() > deadline:
                self._keep_log = True
                raise self._failure(f"no READY from the setup command within {timeout:.0f} s")
        lines = list(self.stdout_lines)
        return lines[: lines.index("READY")] if "READY" in lines else lines

    # -- crash dumps through kdump -----------------------------------------

    @property
    def scratch_disks(self) -> list[Path]:
        """The virtio disks the capture kernel writes makedumpfile's streams to, one per dump."""
        return [self.run_dir / f"scratch{i}.img" for i in range(len(self.crash.dumps) if self.crash else 0)]

    def _write_crash_scripts(self, initrd: Path, binds: list[str]) -> None:
        assert self.crash is not None
        for disk in self.scratch_disks:
            with open(disk, "wb") as f:  # sparse: only what is written takes room
                f.truncate((self.memory_mb + 256) << 20)
        append = [
            "console=ttyS0", "8250.nr_uarts=4", "irqpoll", "nr_cpus=1", "reset_devices",
            "panic=-1", "loglevel=4", "rdinit=/init", "VMTEST_TAG=host",
            f"VMTEST_RUN={self.run_dir}", "VMTEST_MODE=capture",
        ]
        if binds:
            append.append("VMTEST_TMPBINDS=" + ":".join(binds))
        path = "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        (self.run_dir / "kexec.sh").write_text(
            path + f"exec kexec -p {shlex.quote(str(self.kernel.vmlinuz))} "
            f"--initrd={shlex.quote(str(initrd))} --append={shlex.quote(' '.join(append))}\n"
        )
        saves = []
        for i, (level, compress) in enumerate(self.crash.dumps):
            flags = " ".join(f for f in ("-F", f"-d {level}", COMPRESS_FLAGS[compress]) if f)
            saves.append(f"makedumpfile {flags} /proc/vmcore > /dev/vd{chr(ord('a') + i)} || exit $?\n")
        (self.run_dir / "capture.sh").write_text(
            "# In the capture kernel: /proc/vmcore through makedumpfile to the scratch disks.\n"
            + path + "".join(saves) + "sync\nexit 0\n"
        )

    def crash_dumps(self, outs: list[Path], timeout: float) -> list[Path]:
        """
        Panic the guest (sysrq c), let kdump save its memory once per dump of the crash
        options, and write them on the host, to ``outs`` in that order.
        """
        assert self.crash is not None and self.qemu is not None
        assert len(outs) == len(self.crash.dumps), "one output per dump"
        self._conns["control"].setblocking(True)
        self._conns["control"].sendall(b"panic\n")
        code = self.wait(timeout)
        if code != 0:
            self._keep_log = True
            raise self._failure(f"makedumpfile in the capture kernel failed (exit {code})")
        written = []
        for disk, out in zip(self.scratch_disks, outs):
            out = Path(os.path.abspath(out))
            out.parent.mkdir(parents=True, exist_ok=True)
            unflatten(disk, out)
            disk.unlink()
            written.append(out)
        return written

    # -- QMP and dumps ------------------------------------------------------

    def qmp(self) -> QMP:
        if self._qmp is None:
            self._qmp = QMP(str(self.run_dir / "qmp.sock"))
        return self._qmp

    def dump(self, out: Path, fmt: str) -> Path:
        """Write a memory dump of the guest: ``elf`` or ``kdump`` (kdump-compressed, zlib)."""
        out = Path(os.path.abspath(out))
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "elf":
            self.qmp().execute("dump-guest-memory", timeout=900, paging=False,
                               protocol=f"file:{out}")
        elif fmt == "kdump":
            flat = out.with_name(out.name + ".flat")
            try:
                self.qmp().execute("dump-guest-memory", timeout=900, paging=False,
                                   protocol=f"file:{flat}", format="kdump-zlib")
                unflatten(flat, out)
            finally:
                flat.unlink(missing_ok=True)
        else:
            raise VMTestError(f"unknown dump format {fmt!r}: elf or kdump")
        return out

    # -- teardown -----------------------------------------------------------

    _keep_log = False

    def close(self) -> None:
        """Stop QEMU and virtiofsd and remove the run directory (kept after a failure)."""
        if self._qmp is not None:
            with contextlib.suppress(OSError):
                self._qmp.close()
        self._terminate()
        if self._keep_log:
            for p in self.run_dir.iterdir():
                if p.name not in ("console.log", "qemu.log", "virtiofsd.log", "qemu.cmd", "cmd.sh"):
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)
