"""Every network namespace at once (--all-netns) and one by choice (--netns), against ss run
inside each namespace (nsenter), on every kernel and in every mode."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.namespaces import netns_by_inode, netns_inode, own_netns
from drgn_ss.tables.inet import tcp_hashinfo_address, udp_table_address

from tests.json_text import schema_validator, text_line
from tests.kernel.test_ss import assert_partial_is_true, assert_partial_said, normalize
from tests.kernel.workload import NETNS_NAMES, NETNS_OPTION_SETS

TAG_RE = re.compile(r' netns:\((\d+)(?:,"([^"]*)",pid=(\d+)(?:,cgroup:(\S*))?)?\)$')


def ours(prog: drgn.Program, args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *args.split()], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def by_namespace(text: str) -> dict[int, list[tuple[str, tuple[str, ...]]]]:
    """The lines of an --all-netns listing by namespace inode: (line less its tag, tag fields)."""
    out: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    for line in text.splitlines():
        m = TAG_RE.search(line.rstrip())
        assert m, f"no netns tag: {line!r}"
        out.setdefault(int(m.group(1)), []).append((line.rstrip()[: m.start()], m.groups()[1:]))
    return out


def _check(code: int, got: str, expected: str, workload: dict[str, Any], err: str) -> None:
    if code == 3 and workload.get("dump_level", 0) & 8:  # see test_ss.test_same_lines_as_ss
        assert_partial_said(err)
        assert_partial_is_true(got, expected, err)
        return
    assert code == 0, err
    assert normalize(got) == normalize(expected)


@pytest.mark.parametrize("opts", NETNS_OPTION_SETS)
def test_all_netns_is_the_union_of_each_namespace(prog: drgn.Program, workload: dict[str, Any], opts: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """
    Each namespace's lines, tag set aside, are what ss printed inside it, and their tag names
    a process that lives there; the listing's own namespace's lines are ss's default listing.
    """
    code, got, err = ours(prog, f"--all-netns {opts}", capsys)
    groups = by_namespace(got)
    for name in NETNS_NAMES:
        ns = workload["netns"][name]
        assert ns["ss"][opts].strip(), f"ss printed nothing in {name}"
        lines = groups.pop(ns["inode"], [])
        _check(code, "\n".join(line for line, _ in lines), ns["ss"][opts], workload, err)
        tags = {tag[:2] for _, tag in lines}
        if code == 3:  # a filtered dump: the task list may be cut before the namespace's process
            tags.discard((None, None))
            assert tags <= {(name, str(ns["pid"]))}, lines[:1]
        else:
            assert tags == {(name, str(ns["pid"]))}, lines[:1]
    own = netns_inode(prog, own_netns(prog))
    lines = groups.pop(own, [])
    _check(code, "\n".join(line for line, _ in lines), workload["ss"][opts], workload, err)
    # test_runs_in, test_kernel_users, test_queues
    for extra in ("container_cgroups", "kernel_socks", "container", "listen_queues"):
        groups.pop(int((workload.get(extra) or {}).get("netns_inode") or 0), None)
    # What is left: the workload's fourth namespace, which holds one TCP listener, on :22.
    assert all(":22 " in line for lines in groups.values() for line, _ in lines), groups


@pytest.mark.parametrize("how", ["inode", "pid"])
def test_netns_picks_one(prog: drgn.Program, workload: dict[str, Any], how: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    ns = workload["netns"]["ns-b"]
    for opts in NETNS_OPTION_SETS:
        code, got, err = ours(prog, f"--netns {ns[how]} {opts}", capsys)
        if code == 1 and "could not" in err and workload.get("dump_level", 0) & 8:
            pytest.skip("a filtered dump: the namespace or task list is cut before the namespace")
        _check(code, got, ns["ss"][opts], workload, err)


def test_netns_unknown_is_one_line_error(prog: drgn.Program, capsys: pytest.CaptureFixture[str]) -> None:
    code, got, err = ours(prog, "--netns 4000000 -tan", capsys)
    assert code == 1 and not got
    # (after the crash summary, on a crash dump; on a filtered one, saying what list is cut)
    last = err.splitlines()[-1]
    assert last.startswith("ss.py: --netns 4000000: no network namespace has that inode number, and no "
                           "process that pid") or last.startswith(
        "ss.py: --netns 4000000: the network namespace list could not be read whole")
    assert len(err.splitlines()) == 1 or err.startswith("ss.py: crash dump of")


def test_all_netns_json(prog: drgn.Program, workload: dict[str, Any],
                        capsys: pytest.CaptureFixture[str]) -> None:
    """--json --all-netns: the netns fields, and the same lines as the text."""
    code, got, err = ours(prog, "--json --all-netns -tanp", capsys)
    assert code in (0, 3), err
    objects = json.loads(got)
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)
    code2, text, err = ours(prog, "--all-netns -tanp", capsys)
    assert code2 == code, err
    from_json = "\n".join(text_line(obj, netid=False) for obj in objects)
    assert sorted(normalize(from_json)) == sorted(normalize(text))  # both as ss's tests see them
    ns = workload["netns"]["ns-private"]
    mine = [obj for obj in objects if obj["netns"] == ns["inode"]]
    if not mine and code == 3 and workload.get("dump_level", 0) & 8:
        pytest.skip("a filtered dump: the namespace list is cut before ns-private")
    known = {(ns["pid"], "ns-private")} | ({(None, None)} if code == 3 else set())  # see above
    assert mine and {(o["netns_pid"], o["netns_command"]) for o in mine} <= known


def test_private_tables_are_walked(prog: drgn.Program, workload: dict[str, Any]) -> None:
    """
    The namespace made with tcp_child_ehash_entries (6.1+) and udp_child_hash_entries (6.2+)
    set really has tables of its own, so the union test covered walking them.
    """
    private = workload["netns"]["private_tables"]
    if not private:
        pytest.skip("this kernel has no per-namespace tables")
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    init = facts.symbol("init_net")
    net = netns_by_inode(prog, workload["netns"]["ns-private"]["inode"])
    assert net is not None
    if "tcp_child_ehash_entries" in private:
        assert tcp_hashinfo_address(facts, mem, net) != tcp_hashinfo_address(facts, mem, init)
    if "udp_child_hash_entries" in private:
        assert udp_table_address(facts, mem, net) != udp_table_address(facts, mem, init)
