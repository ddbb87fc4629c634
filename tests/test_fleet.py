"""The agents' output on records made by hand: the traffic ledger's counters across samples
(connections that come and go, processes past the top N, a reboot, a state file damaged),
the Prometheus file as the client library's own parser reads it back, and Zabbix's keys.
The kernel test (tests/kernel/test_fleet.py) runs the real agents against a guest."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from drgn_ss.commands.common import UsageError
from drgn_ss.commands.fleet import _labels
from drgn_ss.fleet import FleetSample, Holder, NamespaceRow, TrafficLedger
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.output.metrics import METRIC_NAMES, metric_families, registry_of
from drgn_ss.output.zabbix import ZabbixKeyError, discovery_json, item_value, parse_key
from drgn_ss.sockets.counters import SockStat
from drgn_ss.sockets.limits import HostLimits, NetLimits, ProtoMemory
from drgn_ss.sockets.queues import ListenerQueues
from drgn_ss.sockets.record import AF_INET, TCP_ESTABLISHED, TCP_LISTEN, Socket
from drgn_ss.traffic import TcpCounters
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

LO = socket.inet_aton("127.0.0.1")
NETNS = 4026531840


def tcp(address: int, state: int, sport: int, dport: int = 0) -> Socket:
    return Socket("tcp", AF_INET, state, LO, sport, LO if dport else bytes(4), dport, 0, None, 0, 0,
                  address, 0, 0, NETNS, None, None, "full", address)


def who(comm: str, pid: int) -> Holder:
    return Holder(NETNS, "", comm, pid)


def sample(conns: dict[int, tuple[Holder, int, int]], octets: tuple[int, int] = (0, 0), jiffies: int = 1000,
           listeners: dict[int, Holder] | None = None) -> FleetSample:
    """Connections {address: (holder, bytes acked, bytes received)} and listeners on port 80+."""
    socks = [tcp(a, TCP_ESTABLISHED, 40000 + a, 80) for a in conns]
    holders = {a: h for a, (h, _, _) in conns.items()}
    queues = {}
    for i, (a, h) in enumerate((listeners or {}).items()):
        socks.append(tcp(a, TCP_LISTEN, 80 + i))
        holders[a] = h
        queues[a] = ListenerQueues(2, 128, (), (), 5)
    counters = {a: TcpCounters(acked, acked, received, 0, 0) for a, (_, acked, received) in conns.items()}
    summary = SockStat(*([0] * 13))._replace(tcp_tws=7, tcp_orphans=1)
    host = HostLimits(4096, ProtoMemory(10, 100, 200, 300, False), ProtoMemory(1, 100, 200, 300, None))
    return FleetSample(jiffies, socks, holders, queues, counters,
                       [NamespaceRow(NETNS, summary, NetLimits(5000, 3, 4), octets)], host, WalkErrors())


def test_counters_never_fall_when_connections_close() -> None:
    web = who("web", 10)
    ledger = TrafficLedger("6.1", top=5)
    ledger.add(sample({1: (web, 100, 10), 2: (web, 50, 5)}, (1000, 1000)))
    assert ledger.totals[web] == [150, 15]
    # Connection 2 closed; 1 moved on; 3 is new since: all of its bytes are the interval's.
    ledger.add(sample({1: (web, 400, 30), 3: (web, 7, 1)}, (3000, 3500), 2000))
    assert ledger.totals[web] == [150 + 300 + 7, 15 + 20 + 1]
    # In: 2000 moved, 21 attributed; out: 2500 moved, 307 attributed.
    assert ledger.unattributed[NETNS] == [2000 - 21, 2500 - 307]
    # A socket's address reused by another connection (counters smaller): counted anew.
    ledger.add(sample({1: (web, 5, 2)}, (3000, 3500), 3000))
    assert ledger.totals[web] == [462, 38]


def test_the_top_n_and_the_other_bucket_add_up() -> None:
    ledger = TrafficLedger("6.1", top=1)
    a, b = who("a", 1), who("b", 2)
    ledger.add(sample({1: (a, 100, 0), 2: (b, 10, 0)}))
    assert ledger.totals[a] == [100, 0] and ledger.totals[Holder(NETNS, "", "other", 0)] == [10, 0]
    # b's bytes stay in other; when a holds no socket, its counter ends and b gets a slot of its own.
    ledger.add(sample({2: (b, 30, 0)}, jiffies=2000))
    assert a not in ledger.totals and ledger.totals[b] == [20, 0]
    assert ledger.totals[Holder(NETNS, "", "other", 0)] == [10, 0]


def test_a_reboot_starts_over_and_the_state_round_trips() -> None:
    web = who("web", 10)
    ledger = TrafficLedger("6.1", top=5)
    ledger.add(sample({1: (web, 100, 10)}, (500, 600), 5000))
    again = TrafficLedger.from_state(json.loads(json.dumps(ledger.state())), "6.1", 5)
    assert (again.totals, again.conns, again.octets, again.jiffies) == (
        ledger.totals, ledger.conns, ledger.octets, ledger.jiffies)
    again.add(sample({1: (web, 100, 10)}, (10, 10), 10))  # fewer jiffies: booted since
    assert again.totals[web] == [100, 10] and again.unattributed[NETNS] == [0, 0]


@pytest.mark.parametrize("damage", [
    lambda s: s.update(format=99), lambda s: s.update(release="5.10"),
    lambda s: s["conns"][0].__setitem__(6, -1),
    lambda s: s["totals"][0].__setitem__(0, 7), lambda s: s.update(conns="x"), lambda s: s.pop("octets"),
])
def test_a_damaged_state_is_refused_whole(damage: Any) -> None:
    ledger = TrafficLedger("6.1", top=5)
    ledger.add(sample({1: (who("web", 10), 100, 10)}))
    state = json.loads(json.dumps(ledger.state()))
    damage(state)
    with pytest.raises(ValueError):
        TrafficLedger.from_state(state, "6.1", 5)


def _parsed(families: list[Any]) -> dict[str, Any]:
    text = generate_latest(registry_of(families)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_read_back_with_help_type_and_escaped_names() -> None:
    hostile = who('a\nb"\x1b[31m', 7)
    ledger = TrafficLedger("6.1", top=5)
    s = sample({1: (hostile, 100, 10)}, (1000, 1000), listeners={9: hostile})
    ledger.add(s)
    families = metric_families(s, ledger, 5, 0.25, {"host": "web1"})
    text = generate_latest(registry_of(families)).decode()
    assert "\x1b" not in text and "# HELP drgn_ss_sockets " in text and "# TYPE drgn_ss_sockets gauge" in text
    parsed = _parsed(families)
    sockets = {(m.labels["state"], m.labels["process"]): m.value for m in parsed["drgn_ss_sockets"].samples}
    assert sockets == {("ESTAB", 'a.b".[31m'): 1, ("LISTEN", 'a.b".[31m'): 1}
    assert all(m.labels["host"] == "web1" for f in parsed.values() for m in f.samples)
    sent = [m for m in parsed["drgn_ss_process_sent_bytes"].samples if m.name.endswith("_total")]
    assert [m.value for m in sent] == [100]
    queue = parsed["drgn_ss_listen_queue_length"].samples[0]
    assert (queue.labels["local"], queue.value) == ("127.0.0.1:80", 2)
    names = {n.removesuffix("_total") for n in METRIC_NAMES}
    assert set(parsed) <= names and "drgn_ss_netns_unattributed_bytes" in parsed


def test_processes_past_the_top_are_summed_into_other() -> None:
    conns = {i: (who(f"p{i}", i), 0, 0) for i in range(1, 6)}
    conns.update({10 + i: (who("p1", 1), 0, 0) for i in range(3)})  # p1 holds the most
    s = sample(conns)
    ledger = TrafficLedger("6.1", top=2)
    ledger.add(s)
    parsed = _parsed(metric_families(s, ledger, 2, 0.1))
    counts = {m.labels["process"]: m.value for m in parsed["drgn_ss_sockets"].samples}
    assert counts == {"p1": 4, "p2": 1, "other": 3}


def test_label_names_that_clash_are_refused() -> None:
    assert _labels(["host=web1", "dc=x"]) == {"host": "web1", "dc": "x"}
    for bad in (["netns=1"], ["host=a", "host=b"], ["1x=2"], ["noequals"], ["__name__=x"]):
        with pytest.raises(UsageError):
            _labels(bad)


def test_zabbix_discovery_and_items() -> None:
    web = who("web", 10)
    s = sample({1: (web, 0, 0), 2: (web, 0, 0)}, listeners={9: web})
    rows = json.loads(discovery_json(s, "connections"))["data"]
    assert len(rows) == 3 and {r["{#STATE}"] for r in rows} == {"ESTAB", "LISTEN"}
    assert all(r["{#PROC}"] == "web" and r["{#PID}"] == "10" for r in rows)
    assert json.loads(discovery_json(s, "processes"))["data"] == [
        {"{#PROC}": "web", "{#PID}": "10", "{#NETNS}": str(NETNS)}]
    assert item_value(s, *parse_key("sockets[tcp,ESTAB]")) == 2
    assert item_value(s, *parse_key("port[tcp,80,]")) == 1
    assert item_value(s, *parse_key("proc[web,LISTEN]")) == 1
    assert item_value(s, *parse_key("accept_queue[80]")) == 2
    assert item_value(s, *parse_key("time_wait")) == 7
    for bad in ("nope", "sockets[a,b,c]", "time_wait[1]", "sockets[tcp"):
        with pytest.raises(ZabbixKeyError):
            parse_key(bad)
    with pytest.raises(ZabbixKeyError):
        item_value(s, *parse_key("sockets[tcp,BOGUS]"))


def test_option_errors_come_before_the_kernel_is_opened(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad agent options fail in one line, exit 2, without opening anything (-c names no file)."""
    from drgn_ss.commands.ss import command

    for argv in (["--prometheus", "/tmp/metrics.txt"], ["--interval", "5"], ["--count", "2"],
                 ["--prometheus", "/tmp/x.prom", "--zabbix-get", "time_wait"], ["--zabbix-get", "nope"],
                 ["--zabbix-discovery", "sockets"], ["--prometheus", "/tmp/x.prom", "-t"],
                 ["--prometheus", "/tmp/x.prom", "--prometheus-label", "netns=1"]):
        assert command([*argv, "-c", "/nonexistent/vmcore"]) == 2, argv
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and err[1] == "Try 'drgn-ss --help'." and "nonexistent" not in err[0], err
