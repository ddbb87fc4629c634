"""--containers against the truth the workload made: a process in each cgroup layout of
tests/container_paths.py (tests/kernel/container_cgroups.py), and a real container started
by crun; on every kernel and in every mode."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run
from drgn_ss.containers import container_fields, container_text

from tests.container_paths import VECTORS
from tests.json_text import schema_validator


def ours(prog: drgn.Program, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *argv], out=out)
    err = capsys.readouterr().err
    if code == 1 and "--netns" in argv and "could not be read whole" in err:
        pytest.skip("the dump lost a page of the namespace list: --netns says so")  # a filtered dump
    return code, out.getvalue(), err


def _layouts(workload: dict[str, Any]) -> dict[str, Any]:
    truth = workload.get("container_cgroups")
    if not truth or "skipped" in truth:
        pytest.skip(f"no cgroup layouts in this guest: {truth and truth.get('skipped')}")
    return truth


def _port_lines(text: str) -> dict[int, str]:
    out = {}
    for line in text.splitlines():
        m = re.search(r"127\.0\.0\.1:(\d+) ", line)
        if m:
            out[int(m.group(1))] = line
    return out


def test_each_layout_names_its_container(prog: drgn.Program, workload: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each listener's holder shows what its cgroup says: a container, a pod, a unit, or nothing."""
    truth = _layouts(workload)
    code, text, err = ours(prog, ["--netns", str(truth["netns_inode"]), "-tlnp", "--containers"], capsys)
    code_j, out_j, err_j = ours(prog, ["--netns", str(truth["netns_inode"]), "-tlnp", "--containers",
                                       "--json"], capsys)
    partial = code == 3 and workload.get("dump_level", 0) & 8  # a filtered dump may lose a task
    assert code == 0 or partial, err
    lines = _port_lines(text)
    objects = {o["local_port"]: o for o in json.loads(out_j)}
    validator = schema_validator()
    assert len(truth["processes"]) == len(VECTORS)
    for proc, (path, expected) in zip(truth["processes"], VECTORS):
        assert proc["path"] == path
        if partial and proc["port"] not in lines:
            continue
        line, obj = lines[proc["port"]], objects[proc["port"]]
        validator.validate(obj)
        if partial and not obj["owners"]:
            continue  # its task or file was on a page the dump lost
        want = container_text(expected) if expected is not None else ""
        (owner,) = obj["owners"]
        assert owner["pid"] == proc["pid"], line
        if partial and want and "container:" not in line and "unit:" not in line and "pod:" not in line:
            continue  # its cgroup was on a page the dump lost: said by the exit status
        if expected is not None and want:
            assert f'pid={proc["pid"]},fd=' in line and f",{want}))" in line, (path, line)
            assert owner["container"] == container_fields(expected), path
        else:
            assert "container:" not in line and "unit:" not in line and "pod:" not in line, (path, line)
            assert "container" not in owner, path


def test_all_netns_tag_says_what_the_namespace_runs_in(prog: drgn.Program, workload: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The tag of the layouts' namespace names its lowest pid's container, as its users do."""
    truth = _layouts(workload)
    code, out, err = ours(prog, ["--all-netns", "-tln", "--containers", "--json"], capsys)
    assert code in (0, 3), err
    first = min(truth["processes"], key=lambda p: p["pid"])
    expected = dict(VECTORS)[first["path"]]
    tags = {(o["netns_pid"], json.dumps(o.get("netns_container"))) for o in json.loads(out)
            if o["netns"] == truth["netns_inode"]}
    want = container_fields(expected) if expected is not None and container_text(expected) else None
    if code == 3 and workload.get("dump_level", 0) & 8:  # a lost page: the next process, or none
        if not tags:
            pytest.skip("the dump lost the pages of every listener of the layouts' namespace")
        fits = {(None, "null")}
        for proc in truth["processes"]:
            said = dict(VECTORS)[proc["path"]]
            fits.add((proc["pid"], "null"))
            if said is not None and container_text(said):
                fits.add((proc["pid"], json.dumps(container_fields(said))))
        assert len(tags) == 1 and tags <= fits, tags
    else:
        assert tags == {(first["pid"], json.dumps(want))}


def test_crun_container_is_attributed(prog: drgn.Program, workload: dict[str, Any],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A container crun started (its own namespaces, docker's cgroupfs path) is named by its id."""
    truth = workload.get("container")
    if not truth or "skipped" in truth:
        pytest.skip(f"no OCI container in this guest: {truth and truth.get('skipped')}")
    code, text, err = ours(prog, ["--all-netns", "-tlnp", "--containers"], capsys)
    assert code in (0, 3), err
    short = truth["id"][:12]
    lines = [line for line in text.splitlines() if f":{truth['port']} " in line
             and f"netns:({truth['netns_inode']}," in line]
    named = bool(lines) and f",container:(docker,{short})))" in lines[0]
    if code == 3 and workload.get("dump_level", 0) & 8 and not named:
        pytest.skip("the dump lost the container's socket, task or cgroup: the exit status says so")
    assert len(lines) == 1, text
    assert f"pid={truth['pid']}," in lines[0]
    assert f",container:(docker,{short})))" in lines[0]
    assert lines[0].rstrip().endswith(f",container:(docker,{short}))")  # the namespace's tag too


def test_holders_across_pid_and_network_namespaces(prog: drgn.Program, workload: dict[str, Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--holders of the container's listener names its process, in its own pid and net namespaces."""
    truth = workload.get("container")
    if not truth or "skipped" in truth:
        pytest.skip(f"no OCI container in this guest: {truth and truth.get('skipped')}")
    argv = ["--netns", str(truth["netns_inode"]), "-tln", "--addresses", "--json"]
    code, out, err = ours(prog, argv, capsys)
    found = [o for o in json.loads(out) if o["local_port"] == truth["port"]]
    lossy = code == 3 and workload.get("dump_level", 0) & 8
    if lossy and not (found and found[0]["kernel_addresses"]["file"]):
        pytest.skip("the dump lost the container's socket or its file: the exit status says so")
    (listener,) = found
    code, text, err = ours(prog, ["--holders", listener["kernel_addresses"]["file"], "--containers"], capsys)
    assert code in (0, 3), err
    lost = ",container:(" not in text or "users:(" not in text
    if code == 3 and workload.get("dump_level", 0) & 8 and lost:
        pytest.skip("the dump lost the holder's task, file table or cgroup: the exit status says so")
    (line,) = text.splitlines()
    assert f"pid={truth['pid']},tid={truth['pid']},fd=" in line
    assert f",container:(docker,{truth['id'][:12]})" in line
    assert f"netns:({truth['netns_inode']}," in line
