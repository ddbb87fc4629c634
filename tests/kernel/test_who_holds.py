"""--pid (crash's net -s PID) against /proc/PID/fd as the guest saw it, and --holders (crash's
net -R) by each of a socket's four addresses, for sockets shared by processes and threads;
with --addresses; on every kernel and in every mode."""

from __future__ import annotations

import io
import json
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run

from tests.json_text import schema_validator


def ours(prog: drgn.Program, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def _proc_fds(workload: dict[str, Any], pid: int) -> list[tuple[int, int]]:
    """(fd, socket inode) of each socket ``pid`` held, as /proc/PID/fd showed them in the guest."""
    return sorted((fd, int(ino)) for ino, owners in workload["proc_owners"].items()
                  for _comm, p, fd in owners if p == pid)


def _partial(workload: dict[str, Any], code: int, err: str = "") -> bool:
    """
    A dump makedumpfile filtered lost a page this run needed, and it says so: exit 3, or
    exit 1 for --pid when the task list it looked in is partial.
    """
    return bool(workload.get("dump_level", 0) & 8) and (
        code == 3 or (code == 1 and "the task list was partial" in err))


def _families_left_out(code: int, err: str) -> bool:
    """
    Exit 3 only because a family's types cannot be had (SCTP and vsock on 5.10 without debug
    info: every line but its sockets' is there and checked).
    """
    lines = [line for line in err.splitlines() if line.startswith("ss.py: ")]
    return code == 3 and bool(lines) and all(" sockets are not listed: " in line for line in lines)


def _pids(workload: dict[str, Any]) -> list[int]:
    pids = [workload["pid"], *workload["children"], *(ns["pid"] for ns in workload["netns"].values()
                                                       if isinstance(ns, dict) and "pid" in ns)]
    return [pid for pid in pids if _proc_fds(workload, pid)]


def test_pid_lists_what_proc_pid_fd_lists(prog: drgn.Program, workload: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each process's sockets, every family and namespace: one line per fd, in fd order."""
    validator = schema_validator()
    pids = _pids(workload)
    assert len(pids) > 5
    for pid in pids:
        code, out, err = ours(prog, ["--pid", str(pid), "--all-netns", "-e", "--json"], capsys)
        if code == 1 and _partial(workload, code, err):
            continue  # the process was on a page the dump lost, and it says so
        objects = json.loads(out)
        got = [(o["owners"][0]["fd"], o["inode"]) for o in objects]
        if _partial(workload, code) or _families_left_out(code, err):
            assert set(got) <= set(_proc_fds(workload, pid)), err
            continue
        assert code == 0, err
        assert got == _proc_fds(workload, pid), pid
        assert all(len(o["owners"]) == 1 and o["owners"][0]["pid"] == pid for o in objects)
        for obj in objects:
            validator.validate(obj)
    # Text: the same lines, each with its holder (netlink's too), in the same order.
    code, text, err = ours(prog, ["--pid", str(workload["pid"]), "--all-netns"], capsys)
    fds = [int(line.split(",fd=")[1].split(")")[0]) for line in text.splitlines()]
    if not (_partial(workload, code, err) or _families_left_out(code, err)):
        assert fds == [fd for fd, _ino in _proc_fds(workload, workload["pid"])]


def test_pid_that_does_not_exist_is_one_line(prog: drgn.Program, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ours(prog, ["--pid", "4194303"], capsys)
    assert (code, out) == (1, "")
    # The last line (a crash dump's summary comes first); a filtered dump may say it is partial.
    assert err.strip().splitlines()[-1].startswith("ss.py: --pid 4194303: no such process"), err


def _shared(workload: dict[str, Any]) -> list[int]:
    """Inodes of sockets two processes or more hold."""
    return [int(ino) for ino, owners in workload["proc_owners"].items()
            if len({pid for _comm, pid, _fd in owners}) >= 2]


def test_holders_by_each_address(prog: drgn.Program, workload: dict[str, Any],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A socket held by two processes, found by its sock, socket, file and inode, with both holders."""
    code, out, err = ours(prog, ["-A", "all", "-a", "-e", "-p", "--addresses", "--all-netns", "--json"],
                          capsys)
    by_ino = {o["inode"]: o for o in json.loads(out) if o["inode"]}
    shared = [ino for ino in _shared(workload) if ino in by_ino]
    lossy = _partial(workload, code)
    if lossy and not shared:
        pytest.skip("the dump lost the shared sockets' pages")
    assert shared, "the workload shares sockets between processes"
    for ino in shared[:3]:
        addresses = by_ino[ino]["kernel_addresses"]
        expected = sorted({(pid, fd) for _c, pid, fd in workload["proc_owners"][str(ino)]})
        for how in (addresses["sock"], addresses["socket"], addresses["file"], f"ino:{ino}"):
            if how is None and lossy:
                continue  # its file was on a lost page
            code, out, err = ours(prog, ["--holders", how, "--json"], capsys)
            if _partial(workload, code):
                continue
            assert code == 0 or _families_left_out(code, err), err
            (obj,) = json.loads(out)
            assert obj["kernel_addresses"] == addresses, how
            assert sorted({(o["pid"], o["fd"]) for o in obj["owners"]}) == expected, how


def test_holders_names_every_thread(prog: drgn.Program, workload: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The listener of the process with threads: each of its three threads holds it."""
    code, out, err = ours(prog, ["-tln", "-e", "--addresses", "--json", "sport", "=", ":7007"], capsys)
    if _partial(workload, code) and not json.loads(out):
        pytest.skip("the dump lost the listener's page")
    (obj,) = json.loads(out)
    code, text, err = ours(prog, ["--holders", obj["kernel_addresses"]["sock"]], capsys)
    if _partial(workload, code):
        return
    assert code == 0 or _families_left_out(code, err), err
    (line,) = text.splitlines()
    holders = line.split(" users:(")[1].split(") kaddr:")[0]
    tids = {part.split("tid=")[1].split(",")[0] for part in holders.split("),(")}
    assert len(tids) == 3 and '"ss-worker"' in holders, line


def test_holders_of_an_address_that_is_no_socket(prog: drgn.Program,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ours(prog, ["--holders", "0xffffffff00001000"], capsys)
    assert (code, out) == (1, "")
    assert "is no socket's" in err.strip().splitlines()[-1], err
