"""A live kernel that changes under the walk: sockets opened and closed while drgn-ss reads."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import drgn
import pytest
from drgn_ss.commands.common import EXIT_PARTIAL
from drgn_ss.commands.ss import run

from tests.kernel.churn import Churn
from tests.kernel.conftest import Target

#: Runs of each listing under churn (the issue asks for 20 at least).
RUNS = 20
#: Short TCP connections and UDP sockets the churn must have made during the runs, at least.
MADE = 1000
#: Seconds one listing may take in a TCG guest (one takes 0.1-1 s there).
TIME_BOUND = 60
HOST = r"(\*|[0-9.]+|\[[0-9a-f:.]+\])(%[^ :]+)?"
LINE_RE = re.compile(
    rf"^(ESTAB|SYN-SENT|SYN-RECV|FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT|UNCONN|CLOSE-WAIT|LAST-ACK|LISTEN|CLOSING)"
    rf" +\d+ +\d+ +{HOST}:(\*|\d+) +{HOST}:(\*|\d+)"
    r'( +users:\((\("[^\n]*",pid=\d+,fd=\d+\),?)+\))?$')


def _socket(line: str) -> tuple[str, ...]:
    """A listing line's state and addresses (queues and owners move)."""
    fields = line.split()
    return (fields[0], *fields[3:5])


@pytest.mark.parametrize("opts", ["-tanp", "-uanp"])
def test_listings_under_churn(prog: drgn.Program, target: Target, workload: dict[str, Any],
                              opts: str, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """
    While processes open and close TCP connections and UDP sockets as fast as they can
    (thousands of each: three TCP clients over IPv4 and IPv6 and two UDP churners, from
    tests/kernel/churn_fast.c), every listing ends in time, exits 0 (complete) or 3 (partial,
    said on stderr), prints only well-formed lines, and shows the workload's long-lived
    sockets every time.
    """
    if target.kind != "live":
        pytest.skip("needs a running kernel")
    fixed = ["0.0.0.0:22 ", "[::]:80 ", "*:8080 "] if opts == "-tanp" else ["0.0.0.0:53 ", ":123 "]
    out = io.StringIO()
    assert run(prog, ["-H", *opts.split()], out=out) == 0
    before = {_socket(line) for line in out.getvalue().splitlines()}  # the fixed workload's
    churn = Churn(str(tmp_path), tcp_clients=3, udp_churners=2)
    codes, churned = [], 0
    try:
        for _ in range(RUNS):
            out = io.StringIO()
            capsys.readouterr()
            start = time.monotonic()
            code = run(prog, ["-H", *opts.split()], out=out)
            took = time.monotonic() - start
            err = capsys.readouterr().err
            assert took < TIME_BOUND, f"a listing took {took:.1f} s"
            # 0: complete; 3: partial, and one line on stderr says what was skipped.
            assert (code, err.count("\n")) in ((0, 0), (EXIT_PARTIAL, 1)), (code, err)
            assert code == 0 or "partial listing: could not read" in err, err
            codes.append(code)
            lines = out.getvalue().splitlines()
            bad = [line for line in lines if not LINE_RE.match(" ".join(line.split()))]
            assert not bad, bad[:5]
            for needle in fixed:
                assert any(needle in " ".join(line.split()) + " " for line in lines), needle
            # the churn's short-lived sockets (not its listener, which stays)
            churned += sum(_socket(line) not in before and not line.startswith("LISTEN") for line in lines)
    finally:
        made = churn.stop()
    assert min(made) >= MADE, f"the churn made only {made[0]} TCP connections and {made[1]} UDP sockets"
    if opts == "-tanp":  # the churn did reach the tables read (a UDP socket lives for microseconds)
        assert churned > 0, "no socket of the churn in any listing"
    with capsys.disabled():
        print(f"\n{opts} under churn: exit codes {codes}, churn made {made[0]} TCP connections and "
              f"{made[1]} UDP sockets, {churned} of their sockets listed")
