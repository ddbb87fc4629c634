"""Names read from kernel memory on their way out: interface names, congestion-control names,
command names, a release, messages quoting drgn's errors. Text escapes them as ss 7.0 escapes
process names (the C and the Python renderer alike); JSON carries them exactly.

The fixtures are records as the walks make them, the names decoded from the kernel's bytes
with errors="surrogateescape"; the kernel matrix checks the walks that read them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from drgn_ss.commands import common, program
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.strings import escape_bytes, escape_name, safe_line
from drgn_ss.output.json_output import render_json
from drgn_ss.output.nethogs import Stamp, connection_lines, connection_rows, process_lines, sample_json
from drgn_ss.output.text import Formatter, NetnsTag, render_sockets
from drgn_ss.owners import Owner
from drgn_ss.selection.filter import parse_filter
from drgn_ss.sockets.record import AF_INET, TCP_ESTABLISHED, Socket
from drgn_ss.sockets.tcpinfo import TcpInfo
from drgn_ss.traffic import Connection, Sample, TcpCounters, conn_key, per_process

from tests.json_text import schema_validator, text_line

#: What no line of text output may hold: C0 controls but the tab ss puts before -m/-i lines,
#: DEL, C1 controls, and anything past ASCII.
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\U0010ffff]")


def kernel_name(raw: bytes) -> str:
    """A name as the walks decode the kernel's bytes (every byte kept)."""
    return raw.decode(errors="surrogateescape")


#: Interface names: what a user may choose in a network namespace of their own (an escape
#: sequence, C1 CSI, bytes that are not UTF-8: dev_valid_name() refuses only "/", ":" and
#: whitespace), and what damaged memory may hold besides (a newline forging a line).
IFNAMES = {
    2: kernel_name(b"e\x1b[31m\x9b2J\xff"),
    3: kernel_name(b"x\nFAKE 6.6.6.6:7008"),
    4: "eth0",
}
IFNAMES_SHOWN = {2: "e.[31m?2J?", 3: "x.FAKE 6.6.6.6:7008", 4: "eth0"}
#: A congestion control's name (tcp_congestion_ops.name, a module's choice).
CONG = kernel_name(b"cu\x1b]0;pwn\x07bic")
CONG_SHOWN = "cu.]0;pwn.bic"
HOSTILE_COMM = kernel_name(b'a\nb\x1b[31mc"\xc3\xa9)e')


def sock(n: int, ifindex: int) -> Socket:
    """A full TCP socket on 10.0.0.n:(1000+n), bound to ``ifindex`` (0: none)."""
    return Socket("tcp", AF_INET, TCP_ESTABLISHED, bytes([10, 0, 0, n]), 1000 + n, bytes([10, 0, 0, 99]),
                    443, ifindex, None, 0, 0, 1000 + n, 0, 0, 4026531840, None, None, "full",
                    0xFFFF888000000000 + n * 64, 0, 0, 0, 0xFFFF888100000000 + n * 64)


SOCKS = [sock(1, 0), sock(2, 2), sock(3, 3), sock(4, 4)]


def tcp_info(cong: str) -> TcpInfo:
    values: dict[str, Any] = dict.fromkeys(TcpInfo._fields, 0)
    return TcpInfo(**{**values, "cong": cong})


def formatter(info: bool = False) -> Formatter:
    owners = {s.address: [Owner(HOSTILE_COMM, 7, 3)] for s in SOCKS}
    return Formatter(True, (1, 2), lambda netns, index: IFNAMES[index], owners, owners_by="sock",
                     tcp_info={s.address: tcp_info(CONG) for s in SOCKS} if info else None)


def text(fmt: Formatter, screen: int | None = None) -> str:
    return "".join(render_sockets(SOCKS, fmt, frozenset({0, 1}), True, screen))


@pytest.mark.parametrize("screen", [None, 100])
@pytest.mark.parametrize("info", [False, True])
def test_text_escapes_interface_and_congestion_names(info: bool, screen: int | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per socket (and one for -i), nothing a terminal acts on, in C and in Python."""
    native = text(formatter(info), screen)
    monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    assert text(formatter(info), screen) == native
    lines = native.splitlines()
    assert len(lines) == 1 + len(SOCKS) * (2 if info else 1)
    assert not any(UNSAFE.search(line) for line in lines), lines
    assert "FAKE" not in "".join(line.split()[0] for line in lines)  # no line begins with a forged one
    for s in SOCKS[1:]:
        assert f"10.0.0.{s.sport - 1000}%{IFNAMES_SHOWN[s.ifindex]}:{s.sport}" in native
    assert 'users:(("a.b.[31mc"??",pid=7,fd=3))' in native
    if info:
        assert native.count(f"\t {CONG_SHOWN}") == len(SOCKS)


@pytest.mark.parametrize("lines", [False, True])
def test_json_carries_interface_and_congestion_names_exactly(lines: bool) -> None:
    """The names as the kernel has them (bad bytes as U+FFFD), in plain printable ASCII."""
    out = "".join(render_json(SOCKS, formatter(info=True), lines=lines))
    assert out.isascii() and all(ch.isprintable() for ch in out.replace("\n", ""))
    objects = [json.loads(line) for line in out.splitlines()] if lines else json.loads(out)
    assert [o["interface"] for o in objects] == [
        None, "e\x1b[31m\ufffd2J\ufffd", "x\nFAKE 6.6.6.6:7008", "eth0"]
    assert {o["tcp_info"]["cong"] for o in objects} == {"cu\x1b]0;pwn\x07bic"}
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)


def test_json_rebuilds_the_text_line_of_an_escaped_interface() -> None:
    """The text line rebuilt from the JSON object (tests/json_text.py) is the line printed."""
    socks = [SOCKS[2], SOCKS[3]]  # UTF-8 names: JSON's U+FFFD stands for any bad byte
    fmt = formatter()
    shown = "".join(render_sockets(socks, fmt, frozenset(), False, None))
    objects = json.loads("".join(render_json(socks, fmt, lines=False)))
    assert [text_line(o) for o in objects] == [" ".join(line.split()) for line in shown.splitlines()]


def test_dev_filter_matches_the_kernel_bytes() -> None:
    """`dev NAME` compares the name as given (argv, decoded as Python decodes it) with the
    kernel's bytes, not with the escaped text."""
    name = kernel_name(b"e\x1b[31m\x9b2J\xff")
    for expr, matches in (([name], [SOCKS[1]]), (["e.[31m?2J?"], []), (["eth0"], [SOCKS[3]])):
        f = parse_filter(["dev", *expr])
        assert f is not None
        f.ifname = lambda netns, index: IFNAMES[index]
        assert [s for s in SOCKS if s.ifindex and f.matches(s)] == matches


def test_netns_tag_escapes_the_process_name() -> None:
    tag = NetnsTag(4026532301, type("P", (), {"pid": 5, "comm": HOSTILE_COMM, "cgroup": "/a\nb"})())
    assert tag.text() == ' netns:(4026532301,"a.b.[31mc"??",pid=5,cgroup:/a.b)'
    assert tag.fields()["netns_command"] == 'a\nb\x1b[31mc"é)e'


def test_nethogs_escapes_command_names_in_text_and_keeps_them_in_json() -> None:
    s = SOCKS[0]
    owners = {s.address: [Owner(kernel_name(b"n\x1b[2J\xff"), 9, 3)]}
    now = Sample(2.0, 0.0, {conn_key(s): Connection(s, TcpCounters(10, 10, 20, 1, 1), None)}, owners, 0.0,
                 False, WalkErrors(), None, 2.0)
    for line in process_lines(per_process(now, None)) + connection_lines(connection_rows(now, None)):
        assert not UNSAFE.search(line), line
    assert "n.[2J?" in process_lines(per_process(now, None))[1]
    assert "n.[2J?" in connection_lines(connection_rows(now, None))[1]  # one "?" for the one bad byte
    for by, key, field in (("process", "processes", "comm"), ("connection", "connections", "command")):
        out = sample_json(Stamp("-", None), now, None, by)
        assert out.isascii() and "\n" not in out
        assert json.loads(out)[key][0][field] == "n\x1b[2J\ufffd"


@pytest.mark.parametrize("name, shown", [
    ("lo", "lo"),
    (kernel_name(b"\x1b[31m\x9b\xff"), ".[31m??"),
    (kernel_name(b"a\r\nb\tc\x7f"), "a..b.c."),
])
def test_escape_bytes_and_names_agree(name: str, shown: str) -> None:
    assert escape_name(name) == shown
    assert escape_bytes(name.encode(errors="surrogateescape")) == shown


@pytest.mark.parametrize("message, shown", [
    ("cannot open /tmp/é.core: not an ELF core file", "cannot open /tmp/é.core: not an ELF core file"),
    ("release 6.1\x1b[31m\nFAKE", "release 6.1.[31m.FAKE"),
    ("C1 \x9b2J, a bad byte \udcff, a line separator \u2028, an override \u202e",
     "C1 ?2J, a bad byte ?, a line separator ?, an override ?"),
])
def test_safe_line_keeps_messages_on_one_line(message: str, shown: str) -> None:
    assert safe_line(message) == shown


def test_failure_quoting_a_dump_is_one_safe_line(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> int:
        raise common.Failure("no debug info for kernel 6.1\x1b[2J\nFAKE line")

    assert common.exit_status("drgn-ss", main) == common.EXIT_ERROR
    assert capsys.readouterr().err == "drgn-ss: no debug info for kernel 6.1.[2J.FAKE line\n"


def test_release_in_messages_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The release drgn-ss names in its no-debug-info lines is the dump's: escaped."""
    class Facts:
        release = "6.1.0\x1b[31m"

    monkeypatch.setattr(program, "kernel_facts", lambda prog: Facts())
    message = program.no_debug_info_message(None, LookupError("no debug info for the kernel"))
    assert "linux-image-6.1.0.[31m-dbg" in message and "\x1b" not in message
