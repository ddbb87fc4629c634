"""The private apt state's parsing, and Debian version ordering checked against dpkg."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmtests.apt import AptState, compare_versions, parse_print_uris, parse_records

PAIRS = [
    ("6.1.192-2", "6.1.192-1"),
    ("6.1.192-1", "6.1.99-1"),
    ("6.12.117-1", "6.12.115+deb13.1-1"),
    ("1.0~rc1-1", "1.0-1"),
    ("1:0.9-1", "2.0-1"),
    ("5.10.262-1", "5.10.251-5"),
    ("1.0+b1", "1.0"),
    ("1.0a", "1.0+"),
    ("7.2.13-1", "7.2.13-1"),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_compare_versions_agrees_with_dpkg(a: str, b: str) -> None:
    ours = compare_versions(a, b)
    assert (ours > 0) - (ours < 0) == -((compare_versions(b, a) > 0) - (compare_versions(b, a) < 0))
    if not shutil.which("dpkg"):
        pytest.skip("dpkg not installed")
    for op, expected in (("gt", ours > 0), ("eq", ours == 0), ("lt", ours < 0)):
        rc = subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode
        assert (rc == 0) == expected, f"{a} {op} {b}: dpkg says {rc == 0}, we say {expected}"


def test_parse_records() -> None:
    text = (
        "Package: linux-image-6.1.0-56-cloud-amd64-dbg\nVersion: 6.1.192-2\n"
        "Description: x\n continued line: not a field\n\n"
        "Package: linux-image-6.1.0-55-cloud-amd64-dbg\nVersion: 6.1.191-1\n"
    )
    recs = parse_records(text)
    assert [r["Version"] for r in recs] == ["6.1.192-2", "6.1.191-1"]
    assert "continued line" not in recs[0]


def test_parse_print_uris() -> None:
    line = (
        "'http://deb.debian.org/debian/pool/main/l/linux/x_1_amd64.deb' x_1_amd64.deb 283308068 "
        "SHA256:" + "ab" * 32
    )
    assert parse_print_uris("junk\n" + line + "\n") == [
        ("http://deb.debian.org/debian/pool/main/l/linux/x_1_amd64.deb", "x_1_amd64.deb",
         283308068, "ab" * 32)
    ]


def test_sources_cover_the_matrix(tmp_path: Path) -> None:
    text = AptState(tmp_path).sources_text()
    for suite in ("bullseye", "bookworm", "bookworm-security", "trixie", "sid"):
        assert f" {suite} main" in text
    assert all(line.startswith("deb [arch=amd64 signed-by=") for line in text.splitlines())
