"""--kernel-users against sockets the kernel made for real in the guest
(tests/kernel/kernel_socks.py): vxlan, geneve and fou tunnels, the NFS server (nfsd) and
the kernel's sunrpc client of an NFS mount over loopback; on every kernel and in every mode."""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run

from tests.json_text import schema_validator

KERNEL_RE = re.compile(r" kernel:\(([^,)]*)(?:,([^)]*))?\)")


def ours(prog: drgn.Program, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def _module_types(prog: drgn.Program, module: str) -> bool:
    """
    Whether a module's types can be had: its debug info (every mode but btf), or its BTF
    (5.11+). Without them drgn-ss may still know a few of their facts from its cache.
    """
    from drgn_ss.kernel.modules import kernel_module

    if not os.environ.get("DRGN_SS_NO_DEBUG_INFO"):
        return True
    loaded = kernel_module(prog, module)
    try:
        return loaded is not None and loaded.btf() is not None
    except LookupError:
        return False


def _kernel_socks(workload: dict[str, Any]) -> dict[str, Any]:
    truth = workload.get("kernel_socks")
    if not truth or "skipped" in truth:
        pytest.skip(f"no kernel sockets made in this guest: {truth and truth.get('skipped')}")
    return truth


def _listing(prog: drgn.Program, workload: dict[str, Any], capsys: pytest.CaptureFixture[str],
             *extra: str) -> tuple[str, list[dict[str, Any]], bool]:
    truth = _kernel_socks(workload)
    argv = ["--netns", str(truth["netns_inode"]), "-tuanp", "--kernel-users", *extra]
    code, text, err = ours(prog, argv, capsys)
    code_j, out_j, err_j = ours(prog, [*argv, "--json"], capsys)
    partial = workload.get("dump_level", 0) & 8  # a filtered dump may lose a page of them
    if partial and code == 1 and "could not be read whole" in err:
        pytest.skip("the dump lost a page of the namespace list: --netns says so")
    assert code == 0 or (code == 3 and partial), err
    assert code_j == code, err_j
    objects = json.loads(out_j)
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)
    if code == 3:  # what a lost page took is not shown: what is shown must be right
        text = "\n".join(line for line in text.splitlines() if " kernel:(" in line)
        objects = [o for o in objects if o["kernel_user"] is not None]
        if not objects:
            pytest.skip(f"the dump lost the pages that name them: {err.splitlines()[-1]}")
    return text, objects, code == 3


@pytest.mark.parametrize("tunnel", ["vxlan", "geneve", "fou"])
def test_udp_tunnels_are_named_with_their_devices(prog: drgn.Program, workload: dict[str, Any], tunnel: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    truth = _kernel_socks(workload).get(tunnel)
    if not truth or "skipped" in truth:
        pytest.skip(f"{tunnel}: {truth and truth.get('skipped')}")
    text, objects, partial = _listing(prog, workload, capsys)
    lines = [line for line in text.splitlines() if re.search(rf":{truth['port']} ", line)
             and line.startswith("udp")]
    if partial and not lines:
        pytest.skip(f"the dump lost the pages that name the {tunnel} socket")
    assert lines, text
    # A tunnel's devices are read through its module's types: without them, no dev=.
    detail = f",dev={truth['dev']}" if "dev" in truth else ""
    for line in lines:
        assert (f" kernel:({tunnel}{detail})" in line  # else no types, or a page lost (and said)
                or (f" kernel:({tunnel})" in line and (partial or not _module_types(prog, tunnel)))), line
        assert "users:" not in line
    users = [o["kernel_user"] for o in objects if o["local_port"] == truth["port"] and o["netid"] == "udp"]
    assert users and all(u["name"] == tunnel and u["callback"].startswith("encap_rcv=") for u in users)


def test_nfs_server_and_client_are_named(prog: drgn.Program, workload: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """nfsd's listener and its end of the mount's connection; the sunrpc client's end."""
    truth = _kernel_socks(workload)
    if "skipped" in truth.get("nfsd", {"skipped": "not made"}):
        pytest.skip(f"nfsd: {truth.get('nfsd', {}).get('skipped', 'not made')}")
    port = truth["nfsd"]["port"]
    text, objects, partial = _listing(prog, workload, capsys)
    tcp = [o for o in objects if o["netid"] == "tcp"]
    listeners = [o for o in tcp if o["state"] == "LISTEN" and o["local_port"] == port]
    if partial and not listeners:
        pytest.skip("the dump lost the pages that name nfsd's listeners")
    # The service's name is read through sunrpc's types: without them, just "sunrpc".
    nfsd = {"nfsd"} if _module_types(prog, "sunrpc") and not partial else {"nfsd", "sunrpc"}
    assert listeners and all(o["kernel_user"]["name"] in nfsd and not o["owners"] for o in listeners), text
    assert all(o["kernel_user"]["callback"].startswith(("data_ready=", "state_change=")) for o in listeners)
    if "skipped" in truth.get("nfs_client", {"skipped": "not made"}):
        return
    server_ends = [o for o in tcp if o["state"] == "ESTAB" and o["local_port"] == port]
    client_ends = [o for o in tcp if o["state"] == "ESTAB" and o["peer_port"] == port]
    assert (server_ends and client_ends) or partial, text
    assert all(o["kernel_user"]["name"] in nfsd for o in server_ends), server_ends
    assert all((o["kernel_user"]["name"], o["kernel_user"]["detail"]) == ("sunrpc", "client")
               for o in client_ends), client_ends
    lines = [line for line in text.splitlines() if line.startswith("tcp") and "ESTAB" in line]
    client_line = rf":{port}\s+kernel:\(sunrpc,client\)"
    assert (partial and not client_ends) or any(re.search(client_line, line) for line in lines), text


def test_processes_sockets_have_no_kernel_user(prog: drgn.Program, workload: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Every socket a process holds, in every namespace, shows its users and no kernel:(...)."""
    code, text, err = ours(prog, ["--all-netns", "-tuanp", "--kernel-users"], capsys)
    assert code in (0, 3), err
    held = [line for line in text.splitlines() if " users:(" in line]
    assert held or code == 3
    assert not [line for line in held if " kernel:(" in line]
    # Every kernel user named is a full socket's that no process holds: none is a minisock.
    for line in text.splitlines():
        if " kernel:(" in line:
            assert not line.startswith(("tcp   TIME-WAIT", "tcp   SYN-RECV")), line


def test_unnamed_kernel_sockets_show_their_callback(prog: drgn.Program, workload: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """
    The kernel's own netlink sockets (rtnl:kernel, uevent:kernel...: no file) keep
    netlink_data_ready as sk_data_ready, which names no subsystem: kernel:(?,data_ready=...);
    the processes' netlink sockets show none.
    """
    code, text, err = ours(prog, ["-A", "netlink", "-ap", "--kernel-users"], capsys)
    assert code == 0 or (code == 3 and workload.get("dump_level", 0) & 8), err
    named = [line for line in text.splitlines() if " kernel:(" in line]
    assert len(named) >= 4 or code == 3, text  # rtnl, uevent, genl, audit...
    assert all(line.rstrip().endswith(" kernel:(?,data_ready=netlink_data_ready)") for line in named), named
    if code == 3:
        return  # a filtered dump: what was read is checked above
    code, out, err = ours(prog, ["-A", "netlink", "-ap", "--kernel-users", "--addresses", "--json"], capsys)
    objects = json.loads(out)
    kernel = [o for o in objects if o["kernel_addresses"]["file"] is None]
    assert len(kernel) == len(named) and all(o["local_port"] == 0 for o in kernel)
    assert all(o["kernel_user"] == {"name": "?", "detail": "data_ready=netlink_data_ready",
                                    "callback": "data_ready=netlink_data_ready"} for o in kernel), kernel
    assert all(o["kernel_user"] is None for o in objects if o["kernel_addresses"]["file"] is not None)
