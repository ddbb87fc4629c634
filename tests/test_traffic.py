"""Per-process traffic from two samples (fixture samples; the kernel matrix runs nethogs
against a traffic generator with known volumes)."""

from __future__ import annotations

from collections.abc import Sequence

from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.owners import Owner
from drgn_ss.sockets.record import AF_INET, Socket
from drgn_ss.traffic import Connection, Sample, TcpCounters, conn_key, per_process


def sock(address: int, sport: int, socket: int, proto: str = "tcp") -> Socket:
    return Socket(proto, AF_INET, 1, b"\x7f\0\0\1", sport, b"\x7f\0\0\1", 80, 0, None, 0, 0, 0, 0, 0,
                    4026531840, None, None, "full", address, 0, 0, 0, socket)


def sample(when: float, conns: list[tuple[Socket, int, int]], owners: dict[int, list[Owner]],
           udp: Sequence[tuple[Socket, int, int]] = ()) -> Sample:
    connections = {conn_key(s): Connection(s, TcpCounters(acked, acked, received, 0, 0), None)
                   for s, acked, received in conns}
    connections.update({conn_key(s): Connection(s, None, (queued, drops)) for s, queued, drops in udp})
    return Sample(when, 0.0, connections, owners, 0.0, False, WalkErrors(), None, when)


def test_rates_opened_closed_and_udp() -> None:
    a, b, c = sock(0x1000, 1000, 0xA), sock(0x2000, 1001, 0xB), sock(0x3000, 1002, 0xC)
    u = sock(0x4000, 53, 0xD, "udp")
    owners = {0x1000: [Owner("big", 10, 3)], 0x2000: [Owner("small", 20, 3)], 0x3000: [Owner("big", 10, 4)],
              0x4000: [Owner("dns", 30, 5)]}
    before = sample(10.0, [(a, 1000, 0), (b, 0, 50)], owners)
    now = sample(12.0, [(a, 5000, 0), (c, 600, 0)], owners, [(u, 768, 2)])
    rows = {r.pid: r for r in per_process(now, before)}
    big = rows[10]
    assert (big.tcp, big.sent, big.opened, big.closed) == (2, 5600, 1, 0)
    assert big.sent_rate == (4000 + 600) / 2  # c is new: all its bytes are the interval's
    assert (rows[20].tcp, rows[20].closed) == (0, 1)  # b went away
    assert (rows[30].udp, rows[30].udp_queued, rows[30].udp_drops) == (1, 768, 2)
    assert [r.pid for r in per_process(now, before)][0] == 10  # the busiest first


def test_address_reused_by_a_new_connection_starts_again() -> None:
    """A socket freed and its memory reused (same address and ports, counters smaller) is new."""
    a = sock(0x1000, 1000, 0xA)
    owners = {0x1000: [Owner("p", 1, 3)]}
    rows = per_process(sample(2.0, [(a, 100, 0)], owners), sample(1.0, [(a, 900, 0)], owners))
    assert (rows[0].opened, rows[0].sent_rate) == (1, 100.0)


def test_first_sample_has_no_rates_and_unheld_sockets_go_to_pid_0() -> None:
    rows = per_process(sample(1.0, [(sock(0x1000, 1000, 0), 10, 20)], {}), None)
    assert [(r.pid, r.comm, r.sent_rate, r.sent, r.received) for r in rows] == [
        (0, "(no process)", None, 10, 20)]
