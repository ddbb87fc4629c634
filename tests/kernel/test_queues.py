"""--queues against listeners whose queues the workload filled with known connections
(tests/kernel/listen_queues.py): exactly its waiting children and SYN-RECV requests, their
peers and ages, the full listener's drops against the namespace's TcpExt counters, and
against what ss showed in the same namespace; on every kernel and in every mode."""

from __future__ import annotations

import io
import json
import os
import re
import time
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run

from tests.json_text import schema_validator

#: How far an age may be from the workload's own timing: the kernel's stamp is a jiffy
#: (HZ 250: 4 ms) or a timekeeper tick behind, and the workload's clock is read after it.
EARLY_MS, LATE_MS = 50, 2000


def ours(prog: drgn.Program, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def _truth(workload: dict[str, Any]) -> dict[str, Any]:
    truth = workload.get("listen_queues")
    assert truth and "failed" not in truth, f"no listen queues made in this guest: {truth}"
    return truth


def _listing(prog: drgn.Program, workload: dict[str, Any], capsys: pytest.CaptureFixture[str],
             opts: str, option: str = "--queues") -> tuple[str, list[dict[str, Any]], tuple[float, float]]:
    """Text and JSON of ``opts`` in the namespace, and the kernel's clock then (seconds), as bounds."""
    argv = ["--netns", str(_truth(workload)["netns_inode"]), opts, option]
    before = kernel_clock(prog)
    code, text, err = ours(prog, argv, capsys)
    code_j, out_j, err_j = ours(prog, [*argv, "--json"], capsys)
    after = kernel_clock(prog)
    if workload.get("dump_level", 0) & 8 and code in (1, 3):
        pytest.skip(f"a filtered dump lost pages this listing needs: {err.splitlines()[-1]}")
    assert code == 0, err
    assert code_j == 0, err_j
    objects = json.loads(out_j)
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)
    return text, objects, _bounds_checked(prog, workload, before, after)


def kernel_clock(prog: drgn.Program) -> float:
    """
    The kernel's monotonic clock, in seconds: in the guest, its own CLOCK_MONOTONIC (the
    clock of the workload's times); from outside (a dump, QMP), as drgn-ss reads it.
    """
    if os.environ.get("DRGN_SS_TARGET") == "live":
        return time.monotonic()
    from drgn_ss.kernel.clock import monotonic_ns

    return monotonic_ns(prog) / 1e9


def _bounds_checked(prog: drgn.Program, workload: dict[str, Any], before: float, after: float
                    ) -> tuple[float, float]:
    """The clock's bounds around a run; a dump's (which stands still) must be after the workload's end."""
    if not prog.flags & drgn.ProgramFlags.IS_LIVE:
        assert before >= workload["monotonic_time"] - 0.05, "the dump's clock is before the workload's end"
    return before, after


def _listener(objects: list[dict[str, Any]], port: int) -> dict[str, Any]:
    found = [o for o in objects if o["state"] == "LISTEN" and o["local_port"] == port]
    assert len(found) == 1, found
    return found[0]


def _check_ages(entries: list[dict[str, Any]], made: list[dict[str, Any]],
                clock: tuple[float, float]) -> None:
    """Each entry's age against the time its connection was made, by its peer's port."""
    at = {f"127.0.0.1:{m['port']}": m["at"] for m in made}
    for e in entries:
        low = (clock[0] - at[e["peer"]]) * 1000 - EARLY_MS
        high = (clock[1] - at[e["peer"]]) * 1000 + LATE_MS
        assert low <= e["age_ms"] <= high, (e, low, high)


def test_accept_and_syn_queues_hold_exactly_what_was_made(prog: drgn.Program, workload: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """N children waiting for accept(), M requests held in SYN-RECV by TCP_DEFER_ACCEPT."""
    truth = _truth(workload)["defer"]
    text, objects, clock = _listing(prog, workload, capsys, "-tln")
    got = _listener(objects, truth["port"])
    accept, syn = got["accept_queue"], got["syn_queue"]
    waiting = {f"127.0.0.1:{c['port']}" for c in truth["waiting"]}
    held = {f"127.0.0.1:{c['port']}" for c in truth["syn_recv"]}
    assert (accept["len"], accept["max"]) == (len(waiting), truth["backlog"]), accept
    assert {e["peer"] for e in accept["entries"]} == waiting and len(accept["entries"]) == len(waiting)
    assert syn["len"] == len(held) and {e["peer"] for e in syn["entries"]} == held, syn
    # TCP_DEFER_ACCEPT sends no SYN-ACK again while it waits for data.
    assert all(e["retrans"] == 0 for e in syn["entries"]), syn
    _check_ages(accept["entries"], truth["waiting"], clock)
    _check_ages(syn["entries"], truth["syn_recv"], clock)
    assert accept["oldest_ms"] == max(e["age_ms"] for e in accept["entries"])
    assert syn["oldest_ms"] == max(e["age_ms"] for e in syn["entries"])
    line = next(ln for ln in text.splitlines() if f"127.0.0.1:{truth['port']} " in ln).rstrip()
    assert re.search(rf" accept:\({len(waiting)}/{truth['backlog']},oldest=[0-9.a-z]+\) "
                     rf"syn:\({len(held)},oldest=[0-9.a-z]+,retrans=0\) drops:{got['drops']}$", line), line
    # Every socket that is not a listener has none of it.
    assert all(o["accept_queue"] is None and o["drops"] is None for o in objects if o["state"] != "LISTEN")


def test_queues_agree_with_ss_in_the_namespace(prog: drgn.Program, workload: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Accept queue lengths are ss's Recv-Q; SYN queues its SYN-RECV sockets; drops -m's d."""
    truth = _truth(workload)
    _text, objects, _bounds = _listing(prog, workload, capsys, "-tan")
    for line in truth["ss"]["-tlnm"].splitlines():
        m = re.match(r"LISTEN\s+(\d+)\s+(\d+)\s+127\.0\.0\.1:(\d+)\s.*\bd(\d+)\)", line)
        if not m:
            continue
        recv_q, send_q, port, drops = map(int, m.groups())
        got = _listener(objects, port)
        assert (got["accept_queue"]["len"], got["accept_queue"]["max"]) == (recv_q, send_q), line
        if port == truth["full"]["port"]:  # the one listener no later packet drops at
            assert got["drops"] == drops, line
    syn_recv = sorted(ln.split()[4] for ln in truth["ss"]["-tan"].splitlines() if ln.startswith("SYN-RECV"))
    listed = sorted(e["peer"] for o in objects if o["syn_queue"] for e in o["syn_queue"]["entries"])
    assert listed == syn_recv


def test_full_listener_shows_its_drops(prog: drgn.Program, workload: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A backlog of 1 filled until a SYN was dropped: its drops are the namespace's ListenDrops."""
    truth = _truth(workload)
    full = truth["full"]
    _text, objects, clock = _listing(prog, workload, capsys, "-tln")
    got = _listener(objects, full["port"])
    accept = got["accept_queue"]
    assert accept["len"] == len(full["waiting"]) >= accept["max"] == 1, accept
    assert {e["peer"] for e in accept["entries"]} == {f"127.0.0.1:{c['port']}" for c in full["waiting"]}
    _check_ages(accept["entries"], full["waiting"], clock)
    netstat = truth["netstat"]
    assert netstat["ListenOverflows"] >= 1
    assert got["drops"] == netstat["ListenDrops"], (got["drops"], netstat)


def test_verbose_lists_each_connection_under_its_listener(prog: drgn.Program, workload: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(workload)["defer"]
    text, _objects, _bounds = _listing(prog, workload, capsys, "-tlnv")
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if f"127.0.0.1:{truth['port']} " in ln)
    under = []
    for ln in lines[at + 1:]:
        if not ln.startswith("\t"):
            break
        under.append(ln)
    expected = sorted([f"accept 127.0.0.1:{c['port']}" for c in truth["waiting"]]
                      + [f"syn 127.0.0.1:{c['port']}" for c in truth["syn_recv"]])
    assert sorted(ln.split(" age=")[0].strip() for ln in under) == expected, under
    assert all(re.fullmatch(r"\t(accept|syn) \S+ age=[0-9.a-z]+( retrans=0)?", ln) for ln in under), under


def test_unix_listener_accept_queue(prog: drgn.Program, workload: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(workload)["unix"]
    text, objects, _bounds = _listing(prog, workload, capsys, "-xln")
    found = [o for o in objects if o["local_port"] == truth["inode"]]
    assert len(found) == 1, objects
    accept = found[0]["accept_queue"]
    assert (accept["len"], accept["max"]) == (len(truth["waiting"]), truth["backlog"]), accept
    assert sorted(e["peer"] for e in accept["entries"]) == sorted(f"* {c['inode']}" for c in truth["waiting"])
    assert all(e["age_ms"] is None for e in accept["entries"]) and found[0]["syn_queue"] is None
    line = next(ln for ln in text.splitlines() if f" {truth['inode']} " in ln).rstrip()
    assert line.endswith(f" accept:({len(truth['waiting'])}/{truth['backlog']}) drops:{found[0]['drops']}")
    ss_line = next(ln for ln in _truth(workload)["ss"]["-xln"].splitlines() if f" {truth['inode']} " in ln)
    assert ss_line.split()[2] == str(len(truth["waiting"])), ss_line  # ss's Recv-Q


@pytest.mark.parametrize("argv, message", [
    (["-tn", "--queues"], "--queues shows listeners' queues: give -l or -a too"),
    (["-tln", "-v"], "-v shows each connection waiting on a listener: give --queues too"),
])
def test_queue_option_errors(prog: drgn.Program, capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    code, out, err = ours(prog, argv, capsys)
    assert code == 2 and not out and message in err, err


def _ages_of(objects: list[dict[str, Any]], port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ages of a connection's two ends: the one whose local port is ``port``, then its peer."""
    ends = [o for o in objects if o["state"] == "ESTAB" and port in (o["local_port"], o["peer_port"])]
    assert len(ends) == 2, ends
    server = next(o for o in ends if o["local_port"] == port)
    client = next(o for o in ends if o["peer_port"] == port)
    return server["ages"], client["ages"]


def test_ages_of_an_idle_connection(prog: drgn.Program, workload: dict[str, Any],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """One request and one reply, then nothing: every stamp of both ends from then."""
    truth = _truth(workload)["idle"]
    text, objects, clock = _listing(prog, workload, capsys, "-tan", "--ages")
    for ages in _ages_of(objects, truth["port"]):
        for name in ("last_recv_ms", "last_send_ms", "last_ack_ms"):
            low = (clock[0] - truth["after"]) * 1000 - EARLY_MS
            high = (clock[1] - truth["before"]) * 1000 + LATE_MS
            assert low <= ages[name] <= high, (name, ages, low, high)
        assert ages["oldest_unread_ms"] is None and ages["oldest_unacked_ms"] is None, ages
    line = next(ln for ln in text.splitlines() if f":{truth['client_port']} " in ln and "ESTAB" in ln)
    line = line.rstrip()
    assert re.search(r" age:\(last_recv=[0-9.a-z]+,last_send=[0-9.a-z]+,last_ack=[0-9.a-z]+\)$", line), line


def test_ages_of_data_nobody_reads(prog: drgn.Program, workload: dict[str, Any],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A receiver that never reads, with receive timestamps on: its oldest unread byte's age."""
    truth = _truth(workload)["zero_window"]
    _text, objects, clock = _listing(prog, workload, capsys, "-tan", "--ages")
    receiver, sender = _ages_of(objects, truth["port"])
    low = (clock[0] - truth["first_send"]) * 1000 - EARLY_MS
    high = (clock[1] - truth["first_send"]) * 1000 + LATE_MS
    assert receiver["oldest_unread_ms"] is not None and low <= receiver["oldest_unread_ms"] <= high, receiver
    assert receiver["last_recv_ms"] <= receiver["oldest_unread_ms"] + EARLY_MS  # more came after
    stuck = [o for o in objects if o["state"] == "ESTAB" and o["peer_port"] == truth["port"]]
    assert stuck[0]["send_q"] > 0 and sender["oldest_unread_ms"] is None, stuck
    # What it sent is acknowledged (the window closed), what it has not is not stamped yet.
    assert sender["oldest_unacked_ms"] is None or sender["oldest_unacked_ms"] <= high, sender
    assert all(o["ages"] is None for o in objects if o["state"] == "LISTEN")

