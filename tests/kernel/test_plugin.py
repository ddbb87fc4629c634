"""The ``ss`` drgn command (drgn_ss.commands.plugin): at the drgn prompt and through run_command()."""

from __future__ import annotations

import importlib.metadata
import io
import os
import select
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from typing import Any

import drgn
import pytest
from drgn.commands import run_command

from tests.kernel.conftest import Target
from tests.kernel.test_ss import normalize


def test_entry_point_is_installed() -> None:
    """drgn finds the command through the ``drgn.plugins`` entry point group."""
    points = {p.name: p.value for p in importlib.metadata.entry_points(group="drgn.plugins")}
    assert points.get("ss") == "drgn_ss.commands.plugin"


def test_run_command(prog: drgn.Program, workload: dict[str, Any]) -> None:
    import drgn_ss.commands.plugin  # noqa: F401  (what drgn's plugin loader imports)

    out = io.StringIO()
    with redirect_stdout(out):
        status = run_command(prog, "ss -H -tanp")
    assert status in (0, 3)
    if status == 0:
        assert normalize(out.getvalue()) == normalize(workload["ss"]["-tanp"])
    with redirect_stdout(io.StringIO()) as help_text:
        assert run_command(prog, "ss --help") == 0
    assert "--all-netns" in help_text.getvalue()


def test_run_command_who_holds(prog: drgn.Program, workload: dict[str, Any]) -> None:
    """%ss --pid and --holders, as at drgn's prompt: the workload's sockets, fd by fd, and back."""
    import json

    import drgn_ss.commands.plugin  # noqa: F401

    with redirect_stdout(io.StringIO()) as out:
        status = run_command(prog, f"ss --pid {workload['pid']} --all-netns --addresses --json")
    if status == 1 and workload.get("dump_level", 0) & 8:
        pytest.skip("a filtered dump lost the workload's task: --pid says so")  # test_who_holds checks it
    assert status in (0, 3)
    objects = json.loads(out.getvalue())
    fds = [o["owners"][0]["fd"] for o in objects]
    if status == 3 and not fds:
        pytest.skip("a filtered dump lost the workload's file table: the status says so")
    assert fds and fds == sorted(fds)
    if status == 0:
        assert len(fds) == sum(1 for owners in workload["proc_owners"].values()
                               for _comm, pid, _fd in owners if pid == workload["pid"])
    sock = objects[0]["kernel_addresses"]["sock"]
    with redirect_stdout(io.StringIO()) as out:
        status = run_command(prog, f"ss -H --holders {sock}")
    assert status in (0, 3)
    if status == 0:  # else a filtered dump lost the holder's page, and says so
        assert f"pid={workload['pid']},tid={workload['pid']},fd={fds[0]})" in out.getvalue()
    assert f"kaddr:(sock={sock}," in out.getvalue()


def _drgn_prompt(args: list[str], lines: list[str], timeout: float = 240) -> str:
    """Type ``lines`` at drgn's prompt (a terminal: drgn reads a script from anything else)."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ)
    env.pop("DRGN_DISABLE_PLUGINS", None)  # the point is that drgn loads the plugin
    drgn_cli = os.path.join(os.path.dirname(sys.executable), "drgn")  # the venv's: not on PATH on the host
    proc = subprocess.Popen([drgn_cli, "-q", *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    for line in lines:
        os.write(master, line.encode() + b"\n")
    os.write(master, b"exit()\n")
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed: drgn exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    os.close(master)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_ss_at_the_drgn_prompt(target: Target, workload: dict[str, Any]) -> None:
    """``%ss -tanp`` typed at drgn's prompt prints what the script prints (here: what ss did)."""
    if target.kind == "live":
        args = ["-k"]
    elif target.kind == "core":
        assert target.path is not None
        with open(target.path, "rb") as f:
            if f.read(4) != b"\x7fELF":  # drgn loads debug info again: ~20 s a run under TCG
                pytest.skip("run on the live kernel and on ELF dumps only, to spare CI the time")
        args = ["-c", target.path, *(["-s", target.vmlinux] if target.vmlinux else [])]
    else:
        pytest.skip("drgn's command line does not open --qemu guests (drgn-ss --qemu does)")
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "ss.txt")
        shown = _drgn_prompt(args, ["%ss -H -tanp", f"%ss -H -tanp > {saved}", "%ss --bogus"])
        assert os.path.exists(saved), shown
        with open(saved) as f:
            text = f.read()
    if "partial listing" in shown:
        pytest.skip("a partial listing (a filtered dump): test_same_lines_as_ss checks those")
    expected = normalize(workload["ss"]["-tanp"])
    assert normalize(text) == expected  # redirected: ss's compact layout
    on_screen = "\n".join(normalize(shown))  # after drgn's prompts and the terminal's echo
    assert all(line in on_screen for line in expected), shown
    assert "ss: unrecognized arguments: --bogus" in shown
    assert "Traceback" not in shown
