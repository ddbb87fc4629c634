"""Host tests of who holds a socket: --holders' argument, --pid's lines, finding a socket by
any of its addresses, and the cells --kernel-users, --addresses and --containers add."""

from __future__ import annotations

import argparse
import json

import pytest
from drgn_ss.commands.common import UsageError
from drgn_ss.commands.ss_parser import build_parser
from drgn_ss.commands.who import _annotations, prepare_who_options
from drgn_ss.holders import KernelAddresses, find_socket, parse_holder_address, pid_sockets
from drgn_ss.kernel_users import KernelUser
from drgn_ss.output.json_output import render_json
from drgn_ss.output.text import Formatter, render_sockets
from drgn_ss.owners import Owner
from drgn_ss.sockets.record import AF_INET, Socket

from tests.json_text import schema_validator


def sock(address: int, socket: int, proto: str = "tcp", ino: int = 0, port: int = 80) -> Socket:
    return Socket(proto, AF_INET, 10, bytes(4), port, bytes(4), 0, 0, None, 0, 128, ino, 0, 0,
                  4026531840, 0, None, "full", address, 0, 0, 0, socket)


@pytest.mark.parametrize("text, parsed", [
    ("0xffff888004041380", ("address", 0xFFFF888004041380)),
    ("ffff888004041380", ("address", 0xFFFF888004041380)),
    ("0XFFFF888004041380", ("address", 0xFFFF888004041380)),
    ("ino:14284", ("ino", 14284)),
])
def test_holder_address_parsed(text: str, parsed: tuple[str, int]) -> None:
    assert parse_holder_address(text) == parsed


@pytest.mark.parametrize("text", ["", "0x", "ino:", "ino:-3", "ino:0", "xyz", "0x0", "1" * 17 + "0",
                                  "ino:1x", "\x1b[31m"])
def test_bad_holder_address_is_one_line(text: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_holder_address(text)
    assert "\n" not in str(e.value) and str(e.value).startswith("--holders")


def test_find_socket_by_each_address_prefers_mptcp_over_its_subflows() -> None:
    subflow = sock(0x1000, 0x2000, "tcp", ino=7)
    mptcp = sock(0x3000, 0x2000, "mptcp", ino=7)
    other = sock(0x5000, 0x6000, ino=9)
    socks = [subflow, mptcp, other]
    where = {s.address: KernelAddresses(s.address, s.socket, 0x4000 if s.socket == 0x2000 else 0x7000)
             for s in socks}
    assert find_socket(socks, where, "address", 0x1000) == (subflow, "sock")
    assert find_socket(socks, where, "address", 0x2000) == (mptcp, "socket")
    assert find_socket(socks, where, "address", 0x4000) == (mptcp, "file")
    assert find_socket(socks, where, "ino", 7) == (mptcp, "inode")
    assert find_socket(socks, where, "address", 0x7000) == (other, "file")
    assert find_socket(socks, where, "address", 0x9999) is None
    assert find_socket(socks, where, "ino", 0x1000) is None


def test_pid_sockets_one_line_per_fd_in_pid_then_fd_order() -> None:
    a, b, c = sock(0x10, 0x11), sock(0x20, 0x21), sock(0x30, 0x31)
    owners = {
        0x10: [Owner("x", 7, 9), Owner("y", 5, 3)],
        0x20: [Owner("x", 7, 4), Owner("x", 7, 5)],  # one socket on two fds
        0x30: [Owner("z", 8, 1)],
    }
    held = pid_sockets([a, b, c, a], owners, [7, 5, 7])  # a listed twice, pid 7 given twice
    assert [(h.owner.pid, h.owner.fd, h.sock.address) for h in held] == [
        (7, 4, 0x20), (7, 5, 0x20), (7, 9, 0x10), (5, 3, 0x10)]


def _formatter(owners: dict[int, list[Owner]] | None = None) -> Formatter:
    return Formatter(True, (0, 0), lambda netns, index: f"if{index}", owners, owners_by="sock")


def test_kernel_and_address_cells_after_users_and_escaped() -> None:
    s1, s2 = sock(0xFFFF1000, 0xFFFF2000, "udp", port=4789), sock(0xFFFF3000, 0xFFFF4000)
    fmt = _formatter({0xFFFF3000: [Owner("nginx", 12, 5)]})
    kernel = {s1.address: KernelUser("vxlan", "dev=v\x1b[31m", "encap_rcv=vxlan_rcv")}
    where = {s.address: KernelAddresses(s.address, s.socket, 0 if s is s1 else 0xFFFF5000) for s in (s1, s2)}
    fmt.annotate(*_annotations(kernel, where))
    text = "".join(render_sockets([s1, s2], fmt, frozenset(), False, None))
    lines = text.splitlines()
    assert lines[0].endswith(" kernel:(vxlan,dev=v.[31m) kaddr:(sock=0xffff1000,socket=0xffff2000,file=0x0)")
    assert lines[1].endswith(' users:(("nginx",pid=12,fd=5)) kaddr:(sock=0xffff3000,socket=0xffff4000,'
                             'file=0xffff5000)')
    objects = json.loads("".join(render_json([s1, s2], fmt, lines=False)))
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)
    assert objects[0]["kernel_user"] == {"name": "vxlan", "detail": "dev=v\x1b[31m",
                                         "callback": "encap_rcv=vxlan_rcv"}
    assert objects[0]["kernel_addresses"] == {"sock": "0xffff1000", "socket": "0xffff2000", "file": None}
    assert objects[1]["kernel_user"] is None


def test_pid_lines_show_their_own_holder_and_containers() -> None:
    s = sock(0x10, 0x11)
    fmt = _formatter()
    fmt.owners, fmt.owners_by = {1: [Owner("a", 7, 4)], 2: [Owner("a", 7, 9)]}, "line"
    fmt.runs_in = {7: ("container:(docker,5ca1ab1e5ca1)", {"runtime": "docker", "id": "5ca1ab1e" * 8,
                                                           "pod_uid": None, "qos": None, "unit": None})}
    lines = "".join(render_sockets([s, s], fmt, frozenset(), False, None)).splitlines()
    assert lines[0].endswith(' users:(("a",pid=7,fd=4,container:(docker,5ca1ab1e5ca1)))')
    assert lines[1].endswith(' users:(("a",pid=7,fd=9,container:(docker,5ca1ab1e5ca1)))')
    objects = json.loads("".join(render_json([s, s], fmt, lines=False)))
    assert [o["owners"][0]["fd"] for o in objects] == [4, 9]
    assert objects[0]["owners"][0]["container"]["id"] == "5ca1ab1e" * 8
    schema_validator().validate(objects[0])


def _args(*argv: str) -> argparse.Namespace:
    return build_parser("drgn-ss", True).parse_args(list(argv))


def test_pid_and_holders_imply_every_family_state_and_holder() -> None:
    args = _args("--pid", "5")
    prepare_who_options(args)
    assert args.tables == [("query", "all")] and args.all and args.processes
    args = _args("--holders", "ino:5")
    prepare_who_options(args)
    assert args.all_netns and args.threads
    args = _args("-t", "--pid", "5", "-l")
    prepare_who_options(args)
    assert args.tables == [("table", "tcp")] and not args.all


@pytest.mark.parametrize("argv", [
    ["--pid", "5", "--holders", "ino:3"], ["--pid", "5", "--owners", "proc"], ["--kernel-users"],
    ["--containers"], ["--pid", "5", "-p", "--peers"],
])
def test_bad_option_sets_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        prepare_who_options(_args(*argv))


@pytest.mark.parametrize("value", ["0", "abc", "1e3", str(1 << 31)])
def test_pid_must_be_a_process_id(value: str) -> None:
    with pytest.raises(UsageError, match="not a process id"):
        _args("--pid", value)
