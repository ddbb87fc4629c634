"""nethogs' text and JSON from fixture samples: the sample's time, '-' and null where a value
is not known, IPv6 ends in brackets, KiB (the kernel matrix checks them on dumps)."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from typing import Any

import pytest
from drgn_ss.commands.nethogs import build_parser
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.output import nethogs as nethogs_output
from drgn_ss.output.nethogs import (
    Stamp,
    connection_lines,
    connection_rows,
    dump_stamp,
    header_line,
    process_lines,
    sample_json,
)
from drgn_ss.output.text import endpoint_text
from drgn_ss.owners import Owner
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.traffic import Connection, Sample, TcpCounters, bytes_since, conn_key, per_process

from tests.test_traffic import sample, sock

DUMP = Stamp("2026-11-27 21:41:52 UTC", 1795815712.0)


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def sock6(address: int, src: str, sport: int, dst: str, dport: int, socket_: int) -> Socket:
    return Socket("tcp", AF_INET6, 1, v6(src), sport, v6(dst), dport, 0, False, 0, 0, 0, 0, 0,
                    4026531840, None, None, "full", address, 0, 0, 0, socket_)


def with_unread(base: Sample, tcp: Socket | None = None, udp: Socket | None = None,
                tcp_opens: int | None = None) -> Sample:
    """``base`` with a TCP socket whose counters, and a UDP one whose queue, could not be read."""
    connections = dict(base.connections)
    for s in (tcp, udp):
        if s is not None:
            connections[conn_key(s)] = Connection(s, None, None)
    return base._replace(connections=connections, tcp_opens=tcp_opens)


@pytest.mark.parametrize(("addr", "port", "family", "v6only", "text"), [
    (bytes([127, 0, 0, 1]), 22, AF_INET, None, "127.0.0.1:22"),
    (v6("::1"), 443, AF_INET6, False, "[::1]:443"),
    (v6("::ffff:127.0.0.1"), 8080, AF_INET6, False, "[::ffff:127.0.0.1]:8080"),
    (v6("fe80::1"), 5353, AF_INET6, True, "[fe80::1]:5353"),
    (bytes(16), 0, AF_INET6, False, "*:*"),
    (bytes(4), 0, AF_INET, None, "0.0.0.0:*"),
])
def test_endpoints_as_ss_n_prints_them(addr: bytes, port: int, family: int, v6only: bool | None,
                                       text: str) -> None:
    assert endpoint_text(addr, port, family, v6only) == text


def test_connection_rows_bracket_ipv6_in_text_and_json() -> None:
    client = sock6(0x1000, "::1", 57900, "::1", 443, 0xA)
    server = sock6(0x2000, "::1", 443, "::1", 57900, 0xB)
    v4 = sock(0x3000, 39688, 0xC)
    owners = {0x1000: [Owner("client", 10, 3)], 0x2000: [Owner("server", 20, 4)],
              0x3000: [Owner("v4", 30, 5)]}
    now = sample(2.0, [(client, 4096, 10), (server, 10, 4096), (v4, 0, 0)], owners)
    lines = connection_lines(connection_rows(now, None))
    assert lines[0].split() == ["PID", "COMMAND", "LOCAL", "PEER", "SENT", "KiB/s", "RECV", "KiB/s", "SENT",
                                "KiB", "RECV", "KiB"]
    cells = {line.split()[1]: line.split()[2:] for line in lines[1:]}
    assert cells["client"] == ["[::1]:57900", "[::1]:443", "-", "-", "4.0", "0.0"]
    assert cells["server"][:2] == ["[::1]:443", "[::1]:57900"]
    assert cells["v4"][:2] == ["127.0.0.1:39688", "127.0.0.1:80"]
    rows = {r["command"]: r for r in json.loads(sample_json(DUMP, now, None, "connection"))["connections"]}
    assert (rows["client"]["local"], rows["client"]["peer"]) == ("[::1]:57900", "[::1]:443")
    assert (rows["client"]["sent_rate"], rows["client"]["sent"], rows["v4"]["sent"]) == (None, 4096, 0)


def test_connection_columns_widen_for_long_ipv6_ends() -> None:
    long = sock6(0x1000, "2001:db8:1234:5678:9abc:def0:1234:5678", 65535, "2001:db8::1", 443, 0xA)
    lines = connection_lines(connection_rows(sample(1.0, [(long, 0, 0)], {}), None))
    assert lines[0].index("PEER") == lines[1].index("[2001:db8::1]:443")


def test_a_dump_sample_shows_dashes_where_nothing_is_known() -> None:
    """One sample (a dump's): rates, opened and closed are not known; bytes and counts are, even 0."""
    a, u = sock(0x1000, 1000, 0xA), sock(0x2000, 53, 0xB, "udp")
    owners = {0x1000: [Owner("web", 10, 3)], 0x2000: [Owner("dns", 20, 4)]}
    now = sample(1.0, [(a, 2048, 0)], owners, [(u, 0, 0)])
    processes = per_process(now, None)
    lines = process_lines(processes)
    assert lines[0].split() == ["PID", "COMMAND", "SENT", "KiB/s", "RECV", "KiB/s", "TCP", "OPENED", "CLOSED",
                                "SENT", "KiB", "RECV", "KiB", "UDP", "UDP", "QUEUED", "DROPS"]
    rows = {line.split()[1]: line.split()[2:] for line in lines[1:]}
    assert rows["web"] == ["-", "-", "1", "-", "-", "2.0", "0.0", "0", "0", "0"]
    assert rows["dns"] == ["-", "-", "0", "-", "-", "0.0", "0.0", "1", "0", "0"]
    assert header_line(DUMP, now, None, processes) == (
        "2026-11-27 21:41:52 UTC  2 sockets, cumulative, - TCP connections opened (- seen)")
    obj = json.loads(sample_json(DUMP, now, None, "process"))
    assert {k: obj[k] for k in ("time", "interval_s", "rate_s", "tcp_opened")} == {
        "time": 1795815712.0, "interval_s": None, "rate_s": None, "tcp_opened": None}
    web = next(p for p in obj["processes"] if p["comm"] == "web")
    assert {k: web[k] for k in ("sent", "received", "sent_rate", "opened", "closed", "udp_queued")} == {
        "sent": 2048, "received": 0, "sent_rate": None, "opened": None, "closed": None, "udp_queued": 0}


def test_an_interval_shows_real_zeros() -> None:
    a = sock(0x1000, 1000, 0xA)
    owners = {0x1000: [Owner("web", 10, 3)]}
    before = sample(1.0, [(a, 100, 0)], owners)._replace(tcp_opens=7)
    now = sample(2.0, [(a, 100, 0)], owners)._replace(tcp_opens=9, start=2.0)
    processes = per_process(now, before)
    cells = process_lines(processes)[1].split()[2:]
    assert cells == ["0.0", "0.0", "1", "0", "0", "0.1", "0.0", "0", "0", "0"]
    assert header_line(Stamp("11:44:46", 0.0), now, before, processes) == (
        "11:44:46  1 sockets, 1.00 s interval, 2 TCP connections opened (0 seen: the rest opened and closed "
        "in between)")
    assert header_line(Stamp("11:44:46", 0.0), now._replace(tcp_opens=None), before, processes) == (
        "11:44:46  1 sockets, 1.00 s interval, - TCP connections opened (0 seen)")


def test_unread_counters_are_not_known_but_the_sockets_count() -> None:
    """A TCP socket whose counters, or a UDP one whose queue, could not be read: '-', not 0."""
    a, b, u = sock(0x1000, 1000, 0xA), sock(0x2000, 1001, 0xB), sock(0x3000, 53, 0xC, "udp")
    owners = {0x1000: [Owner("web", 10, 3)], 0x2000: [Owner("web", 10, 4)], 0x3000: [Owner("web", 10, 5)]}
    before = sample(1.0, [(a, 100, 0)], owners)
    now = with_unread(sample(2.0, [(a, 300, 0)], owners), tcp=b, udp=u)
    (web,) = per_process(now, before)
    assert (web.tcp, web.udp, web.opened, web.closed) == (2, 1, 1, 0)
    assert (web.sent, web.received, web.sent_rate, web.udp_queued, web.udp_drops) == (None,) * 5
    assert process_lines([web])[1].split()[2:] == ["-", "-", "2", "1", "0", "-", "-", "1", "-", "-"]
    rows = connection_rows(now, before)
    unread = next(r for r in rows if r["local"].endswith(":1001"))
    assert (unread["sent"], unread["sent_rate"], unread["segs_out"]) == (None, None, None)
    assert next(r for r in rows if r["local"].endswith(":1000"))["sent_rate"] == 200.0
    assert len(rows) == 2  # UDP has no row of its own


def test_counters_unread_in_the_sample_before_give_no_rate() -> None:
    """Known now, not before: the bytes are known, the interval's share of them is not."""
    a = sock(0x1000, 1000, 0xA)
    owners = {0x1000: [Owner("web", 10, 3)]}
    before = with_unread(sample(1.0, [], owners), tcp=a)
    now = sample(2.0, [(a, 5000, 0)], owners)
    assert bytes_since(conn_key(a), TcpCounters(5000, 5000, 0, 0, 0), before) is None
    (web,) = per_process(now, before)
    assert (web.sent, web.sent_rate, web.opened) == (5000, None, 0)
    assert connection_rows(now, before)[0]["sent_rate"] is None


def test_dump_stamp_is_the_dumps_time_or_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    when = datetime(2026, 11, 27, 21, 41, 52, tzinfo=timezone.utc)
    monkeypatch.setattr(nethogs_output, "dump_time", lambda prog: when)
    assert dump_stamp(None) == DUMP
    monkeypatch.setattr(nethogs_output, "dump_time", lambda prog: None)
    assert dump_stamp(None) == Stamp("-", None)
    empty = Sample(0.0, 0.0, {}, {}, 0.0, False, WalkErrors())
    assert header_line(Stamp("-", None), empty, None, []).startswith("-  0 sockets, cumulative")
    assert json.loads(sample_json(Stamp("-", None), empty, None, "process"))["time"] is None


def test_one_unit_kib_everywhere() -> None:
    """The columns, --help and the epilog say KiB, and the numbers are divided by 1024."""
    help_text = build_parser("drgn-nethogs").format_help()
    assert "KiB" in help_text and "KB" not in help_text.replace("KiB", "")
    a = sock(0x1000, 1000, 0xA)
    now = sample(1.0, [(a, 1536, 3 * 1024 * 1024)], {})
    lines: list[str] = process_lines(per_process(now, None)) + connection_lines(connection_rows(now, None))
    for line in lines:
        assert "KB" not in line.replace("KiB", ""), line
    cells: list[Any] = process_lines(per_process(now, None))[1].split()
    assert cells[-5:-3] == ["1.5", "3072.0"]
