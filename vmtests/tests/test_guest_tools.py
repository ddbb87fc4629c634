"""The guest tools' environment, dependency parsing and stamp, without the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vmtests import guest_tools
from vmtests.guest_tools import ensure_guest_tools, guest_tools_env, missing_libraries, parse_depends


def test_env_puts_the_tools_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")
    env = guest_tools_env(tmp_path, "/usr/bin:/bin")
    assert env["PATH"].split(":") == [
        str(tmp_path / "usr/sbin"), str(tmp_path / "sbin"), str(tmp_path / "usr/bin"), "/usr/bin", "/bin",
    ]
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == str(tmp_path / "usr/lib/x86_64-linux-gnu")
    assert str(tmp_path / "lib/x86_64-linux-gnu") in libs
    assert libs[-1] == "/opt/lib"


def test_env_without_a_library_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    env = guest_tools_env(tmp_path, "")
    assert not env["PATH"].endswith(":")
    assert all(p.startswith(str(tmp_path)) for p in env["LD_LIBRARY_PATH"].split(":"))


def test_parse_depends() -> None:
    field = "libc6 (>= 2.34), libnfsidmap1 (= 1:2.6.2-4+deb12u1), rpcbind | portmap, libfoo:any"
    assert parse_depends(field) == [
        [("libc6", ">=", "2.34")],
        [("libnfsidmap1", "=", "1:2.6.2-4+deb12u1")],
        [("rpcbind", None, None), ("portmap", None, None)],
        [("libfoo", None, None)],
    ]


@pytest.mark.parametrize(
    ("have", "op", "want", "ok"),
    [("2.36-9", ">=", "2.34", True), ("2.31", ">=", "2.34", False), ("1.0", None, None, True),
     ("1:2.6.2-4", "=", "1:2.6.2-4", True), ("1.0", "<<", "1.0", False)],
)
def test_satisfies(have: str, op: str | None, want: str | None, ok: bool) -> None:
    assert guest_tools._satisfies(have, op, want) is ok


def test_a_stamp_means_nothing_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRGN_SS_CACHE", str(tmp_path))
    d = tmp_path / "guest-tools"
    (d / "root").mkdir(parents=True)
    stamp = {"format": guest_tools._FORMAT, "suite": guest_tools.TOOLS_SUITE,
             "tools": list(guest_tools.GUEST_TOOLS), "packages": {}}
    (d / "stamp.json").write_text(json.dumps(stamp))

    def no_network(*args: object) -> None:
        raise AssertionError("the stamp was ignored")

    monkeypatch.setattr(guest_tools._ToolsApt, "update", no_network)
    assert ensure_guest_tools() == d / "root"


@pytest.mark.skipif(not shutil.which("ldd"), reason="no ldd")
def test_missing_libraries(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    assert missing_libraries(tmp_path) == []
    shutil.copy(shutil.which("ls") or "/bin/ls", tmp_path / "usr/bin/ls")
    (tmp_path / "usr/bin/script").write_text("#!/bin/sh\n")
    assert missing_libraries(tmp_path) == []
