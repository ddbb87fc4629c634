"""The triage report's findings (drgn_ss.report.triage) and their text and JSON
(drgn_ss.output.report) on records made by hand: each threshold just under and just over,
what is counted where, hostile names escaped. The kernel test (tests/kernel/test_report.py)
checks the same against sockets a guest made."""

from __future__ import annotations

import socket

import pytest
from drgn_ss.commands.common import UsageError
from drgn_ss.commands.report import parse_thresholds
from drgn_ss.output.report import report_json, report_text
from drgn_ss.owners import Owner
from drgn_ss.report import NamespaceFacts, ReportInput, Thresholds, triage
from drgn_ss.sockets.ages import SocketAges
from drgn_ss.sockets.counters import SockStat
from drgn_ss.sockets.limits import HostLimits, NetLimits, ProtoMemory
from drgn_ss.sockets.queues import ListenerQueues
from drgn_ss.sockets.record import (
    AF_INET,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_LISTEN,
    TCP_TIME_WAIT,
    Socket,
)

LO = socket.inet_aton("127.0.0.1")
PEER = socket.inet_aton("10.0.0.9")
NETNS = 4026531840
HOLDER = Owner("app\x1b[31m", 42, 3)


def tcp(address: int, state: int, sport: int, dport: int = 0, kind: str = "full", recv_q: int = 0,
        send_q: int = 0) -> Socket:
    peer = PEER if dport else bytes(4)
    return Socket("tcp", AF_INET, state, LO, sport, peer, dport, 0, None, recv_q, send_q, address, 0, 0,
                  NETNS, None, None, kind, address)


def data(socks: list[Socket], *, tw_max: int = 100, orphans: int = 0, max_orphans: int = 100,
         tcp_mem: ProtoMemory | None = None, ports: tuple[int, int] = (40000, 40099),
         queues: dict[int, ListenerQueues] | None = None, ages: dict[int, SocketAges] | None = None
         ) -> ReportInput:
    summary = SockStat(*([0] * 13))._replace(tcp_orphans=orphans)
    host = HostLimits(max_orphans, tcp_mem or ProtoMemory(10, 100, 200, 300, False),
                      ProtoMemory(0, 100, 200, 300, None))
    owners = {s.address: [HOLDER] for s in socks if s.kind == "full"}
    return ReportInput(socks, owners, "sock", {}, {}, queues or {}, ages or {}, host,
                       [NamespaceFacts(NETNS, NetLimits(tw_max, 3, 4), ports, summary)])


def kinds(report_input: ReportInput, thresholds: Thresholds | None = None) -> list[str]:
    return [f.kind for f in triage(report_input, thresholds).warnings]


def test_nothing_crossed_nothing_said() -> None:
    socks = [tcp(1, TCP_LISTEN, 80), tcp(2, TCP_ESTABLISHED, 80, 5000)]
    report = triage(data(socks, queues={1: ListenerQueues(1, 128, (), (), 0)}))
    assert report.warnings == []
    assert "\nWarnings: none\n" in "".join(report_text(report))


def test_accept_queue_full_at_its_max() -> None:
    listener = tcp(1, TCP_LISTEN, 80)
    assert kinds(data([listener], queues={1: ListenerQueues(127, 128, (), (), 0)})) == []
    found = triage(data([listener], queues={1: ListenerQueues(128, 128, (), (), 9)}))
    assert [f.kind for f in found.warnings] == ["accept_queue_full"]
    text = report_json(found)["warnings"][0]
    assert text == ('accept queue full: 127.0.0.1:80 "app.[31m"(pid=42): 128/128 waiting for accept(), '
                    "9 dropped")


def test_close_wait_older_than_the_threshold_oldest_first() -> None:
    socks = [tcp(10 + i, TCP_CLOSE_WAIT, 80, 6000 + i) for i in range(3)]
    ages = {10: SocketAges(0, 0, 59_000, None, None), 11: SocketAges(0, 0, 61_000, None, None),
            12: SocketAges(0, 0, 120_000, None, None)}
    report = triage(data(socks, ages=ages))
    assert [age for _s, age in report.close_wait] == [120_000, 61_000, 59_000]
    (found,) = report.warnings
    assert found.kind == "close_wait_old"
    assert (found.values["count"], found.values["oldest_ms"]) == (2, 120_000)
    cw = report_json(report)["close_wait"]
    assert cw["count"] == 3 and cw["by_process"] == [{"pid": 42, "command": "app\x1b[31m", "count": 3}]
    assert cw["oldest"][0]["peer"] == "10.0.0.9:6002" and cw["oldest"][0]["age_ms"] == 120_000
    assert kinds(data(socks, ages=ages), Thresholds(close_wait_age_ms=200_000)) == []


def test_time_wait_and_port_use_at_80_percent() -> None:
    def tws(n: int) -> list[Socket]:
        return [tcp(100 + i, TCP_TIME_WAIT, 40000 + i, 443, kind="timewait") for i in range(n)]

    assert kinds(data(tws(7), tw_max=10, ports=(40000, 40009))) == []
    found = triage(data(tws(8), tw_max=10, ports=(40000, 40009)))
    assert [f.kind for f in found.warnings] == ["time_wait", "port_use"]
    out = report_json(found)
    assert out["time_wait"]["by_peer"] == [{"peer": "10.0.0.9:443", "count": 8}]
    assert out["time_wait"]["port_use"] == [{"peer": "10.0.0.9:443", "netns": NETNS, "in_use": 8,
                                             "range": [40000, 40009]}]
    # A port outside the range is not the range's.
    outside = [tcp(200 + i, TCP_TIME_WAIT, 30000 + i, 443, kind="timewait") for i in range(8)]
    assert "port_use" not in kinds(data(outside, tw_max=1000, ports=(40000, 40009)))


def test_orphans_and_memory_pressure() -> None:
    assert kinds(data([], orphans=79, max_orphans=100)) == []
    assert kinds(data([], orphans=80, max_orphans=100)) == ["orphans"]
    flagged = ProtoMemory(10, 100, 200, 300, True)
    over = ProtoMemory(200, 100, 200, 300, False)
    assert kinds(data([], tcp_mem=flagged)) == kinds(data([], tcp_mem=over)) == ["memory_pressure"]
    assert kinds(data([], tcp_mem=ProtoMemory(199, 100, 200, 300, False))) == []


def test_thresholds_parsed_and_refused() -> None:
    assert parse_thresholds(["close-wait-age=1.5", "orphans=50", "port-use=100"]) == Thresholds(
        close_wait_age_ms=1500, orphans=0.5, time_wait=0.8, port_use=1.0)
    for bad in ("orphans=101", "orphans=x", "close-wait-age=-1", "what=1", "orphans"):
        with pytest.raises(UsageError):
            parse_thresholds([bad])


def test_processes_count_each_socket_once_and_sum_queues() -> None:
    socks = [tcp(1, TCP_LISTEN, 80, recv_q=5, send_q=128),
             tcp(2, TCP_ESTABLISHED, 80, 5000, recv_q=7, send_q=9)]
    report_input = data(socks)._replace(owners={1: [HOLDER], 2: [HOLDER, HOLDER._replace(fd=4)]})
    (p,) = triage(report_input).processes
    assert (p.pid, p.sockets, p.recv_q, p.send_q) == (42, 2, 7, 9)  # a listener's queues are no bytes
    assert p.states == {("tcp", TCP_LISTEN): 1, ("tcp", TCP_ESTABLISHED): 1}
