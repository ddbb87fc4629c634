"""Running the tools the guest workload sets things up with (ip, mount, crun, rpc.nfsd...):
with the unpacked Debian tools first (vmtests.guest_tools), and one line of error; and the
processes it forks to hold sockets (:func:`fork_holder`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtests.guest_tools import guest_tools_env


def tools_env(tools_root: str | None) -> dict[str, str]:
    """This process's environment, with the unpacked tools at ``tools_root`` (if any) first."""
    env = dict(os.environ)
    if tools_root:
        env.update(guest_tools_env(Path(tools_root)))
    return env


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run a command; its stdout, or RuntimeError with the last line of its stderr."""
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"{args[0]}: {e}") from e
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()
        raise RuntimeError(f"{' '.join(args[:4])}: {lines[-1]}")
    return proc.stdout


def fork_holder(make: Callable[[], tuple[bytes, Any]]) -> tuple[int, bytes]:
    """
    Fork a process that, with none of this one's files (its sockets would gain a holder)
    and stdout on /dev/null, runs ``make``, which returns what to report and what to keep
    open; it reports that on a pipe, then waits for ever holding it. Its pid and the report
    (empty if ``make`` failed: its traceback is on stderr).
    """
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            return pid, ready.read()
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        for fd in range(3, 1024):
            if fd != ready_w:
                with contextlib.suppress(OSError):
                    os.close(fd)
        report, kept = make()
        os.write(ready_w, report)
        os.close(ready_w)
        while kept is not None:
            signal.pause()
    except BaseException:
        traceback.print_exc()  # os._exit() below would lose it
    finally:
        os._exit(0)
