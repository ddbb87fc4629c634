"""The pieces of a guest run that can be checked on the host."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vmtests.config import REPO
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
