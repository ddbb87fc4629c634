"""Running the tools the guest workload sets things up with (ip, mount, crun, rpc.nfsd...):
with the unpacked Debian tools first (vmtests.guest_tools), and one line of error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
