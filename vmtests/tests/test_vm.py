"""The pieces of a guest run that can be checked on the host."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmtests import vm
from vmtests.config import REPO
from vmtests.kernels import cached_kernels
from vmtests.vm import guest_env, guest_script, tmp_binds


def test_guest_script_keeps_argv_cwd_and_env_exactly(tmp_path: Path) -> None:
    argv = ["python3", "-c", "import os,sys,json; print(json.dumps([os.getcwd(), sys.argv[1:], "
            "os.environ.get('TRICKY'), sorted(os.environ)]))", "a b", "'q'", "$HOME", ""]
    env = {"PATH": "/usr/bin:/bin", "TRICKY": "x'y\"z $(false)\nline"}
    script = tmp_path / "cmd.sh"
    script.write_text(guest_script(argv, str(tmp_path), env))
    out = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=True)
    import json

    cwd, args, tricky, names = json.loads(out.stdout)
    assert cwd == str(tmp_path)
    assert args == ["a b", "'q'", "$HOME", ""]
    assert tricky == env["TRICKY"]
    assert set(names) <= {"PATH", "TRICKY", "PWD", "SHLVL", "_", "LC_CTYPE"}


def test_guest_script_exit_status_passes_through(tmp_path: Path) -> None:
    script = tmp_path / "cmd.sh"
    script.write_text(guest_script(["sh", "-c", "exit 7"], "/", {"PATH": "/usr/bin:/bin"}))
    assert subprocess.run(["/bin/sh", str(script)]).returncode == 7


def test_guest_script_missing_cwd_fails(tmp_path: Path) -> None:
    script = tmp_path / "cmd.sh"
    script.write_text(guest_script(["true"], str(tmp_path / "absent"), {"PATH": "/bin"}))
    assert subprocess.run(["/bin/sh", str(script)], capture_output=True).returncode == 125


def test_guest_env_puts_the_venv_first() -> None:
    env = guest_env({"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": "x", "DRGN_SS_TARGET": "live"})
    assert env["PATH"].split(":")[0] == str(REPO / ".venv" / "bin")
    assert "/usr/sbin" in env["PATH"].split(":")
    assert "SSH_AUTH_SOCK" not in env
    assert env["DRGN_SS_TARGET"] == "live"


def test_tmp_binds() -> None:
    assert tmp_binds(["/work/main", "/root/.cache/x"]) == []
    assert tmp_binds(["/tmp/tmp.abc/repo", "/tmp/tmp.abc", "/tmp/other/x", "/tmp"]) == [
        "/tmp/tmp.abc", "/tmp/other"]


def test_a_guest_that_dies_while_booting_is_booted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that panics before init.sh starts (here: no init at all) is retried, then reported."""
    kernels = cached_kernels(series="6.1")
    if not kernels:
        pytest.skip("no cached 6.1 kernel (the kernel matrix downloads it)")

    class NoInit(vm.Guest):
        def qemu_command(self, *args: Any, **kwargs: Any) -> list[str]:
            cmd = super().qemu_command(*args, **kwargs)
            cmd[-1] = cmd[-1].replace("rdinit=/init", "rdinit=/no-such-init init=/no-such-init")
            return cmd

    monkeypatch.setattr(vm, "BOOT_ATTEMPTS", 2)
    with NoInit(kernels[0], memory_mb=512, accel="tcg") as guest:
        with pytest.raises(vm.VMTestError, match="died while booting, 2 times"):
            guest.start(["true"])
        assert len(guest.boot_failures) == 2
        assert all("panic" in line for line in guest.boot_failures), guest.boot_failures
        assert not guest.booted.is_set()
