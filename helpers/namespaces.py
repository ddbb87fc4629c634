"""Network namespaces: which one to list, and the per-namespace settings ss consults."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.memory import list_nodes, list_reachable
from drgn_ss.kernel.program import is_local_live
from drgn_ss.kernel.strings import c_string
from drgn_ss.kernel.target import kernel_memory, object_limit
from drgn_ss.tasks import task_list

__all__ = [
    "NetnsProcess", "ifname_resolver", "ifnames", "local_port_range", "netns_by_inode", "netns_inode",
    "netns_limit", "netns_list", "netns_of", "netns_processes", "process_cgroups", "own_netns", "task_netns",
]


def netns_limit(prog: Program) -> int:
    """The most network namespaces the kernel could hold (memory full of struct net)."""
    return object_limit(prog, "struct net")


def netns_by_inode(prog: Program, inum: int) -> int | None:
    """
    Find a network namespace by inode number by a raw walk of ``net_namespace_list``.

    :return: ``struct net *`` address, or None
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    link = facts.offset("struct net", "list")
    ns_inum = facts.offset("struct net", "ns.inum")
    for pos in list_nodes(mem, facts.symbol("net_namespace_list"), netns_limit(prog),
                          "network namespace list"):
        if mem.read_u32(pos - link + ns_inum) == inum:
            return pos - link
    return None


def netns_list(prog: Program, errors: WalkErrors | None = None) -> list[int]:
    """
    Every network namespace, in ``net_namespace_list`` order (``init_net`` first). Where
    the list cannot be followed to its end (a page a dump lost, a loop), those that can be
    reached forwards and backwards (:func:`~drgn_ss.kernel.memory.list_reachable`);
    a namespace whose inode number cannot be read is left out; both counted in ``errors``
    (raised without them).

    :return: ``struct net *`` addresses
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    link = facts.offset("struct net", "list")
    inum = facts.offset("struct net", "ns.inum")
    nodes, fault = list_reachable(mem, facts.symbol("net_namespace_list"), netns_limit(prog),
                                  "network namespace list")
    if fault is not None:
        tolerate(errors, "namespaces", fault)
    out = []
    for pos in nodes:
        try:
            mem.read_u32(pos - link + inum)  # a namespace whose inode cannot be read is left out
        except FaultError as e:
            tolerate(errors, "namespaces", e)
            continue
        out.append(pos - link)
    return out


def netns_inode(prog: Program, net: int) -> int:
    """The inode number of a network namespace (``net->ns.inum``, what /proc/PID/ns/net shows)."""
    return kernel_memory(prog).read_u32(net + kernel_facts(prog).offset("struct net", "ns.inum"))


class NetnsProcess(NamedTuple):
    """A process that lives in a network namespace: what tells a user which container it is."""

    pid: int
    #: As the kernel has it, decoded with errors="surrogateescape".
    comm: str
    #: Its cgroup v2 path ("/" for the root), None if it could not be read.
    cgroup: str | None


def task_netns(prog: Program, errors: WalkErrors | None = None) -> list[tuple[int, str, int, int]]:
    """
    The network namespace of every process: a raw walk of the task list, reading
    ``task->nsproxy->net_ns`` (a process that is exiting has no nsproxy: left out).

    :return: (pid, comm, ``struct net *``, ``struct cgroup *`` of the default hierarchy)
        for each process, in pid order
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    T = "struct task_struct"
    tgid, comm = facts.field(T, "tgid"), facts.offset(T, "comm")
    nsproxy, cgroups = facts.offset(T, "nsproxy"), facts.offset(T, "cgroups")
    net_ns = facts.offset("struct nsproxy", "net_ns")
    dfl_cgrp = facts.offset("struct css_set", "dfl_cgrp")
    span = max(tgid.end, comm + 16, nsproxy + 8, cgroups + 8)
    out = []
    for task in task_list(prog, errors):
        try:
            buf = mem.read(task, span)
            proxy = int.from_bytes(buf[nsproxy : nsproxy + 8], "little")
            if not proxy:
                continue
            net = mem.read_u64(proxy + net_ns)
            css_set = int.from_bytes(buf[cgroups : cgroups + 8], "little")
            cgrp = mem.read_u64(css_set + dfl_cgrp) if css_set else 0
        except FaultError as e:
            tolerate(errors, "tasks", e)
            continue
        out.append((tgid.get(buf), c_string(buf, comm, 16, "surrogateescape"), net, cgrp))
    out.sort(key=lambda t: t[0])
    return out


def netns_processes(prog: Program, errors: WalkErrors | None = None) -> dict[int, NetnsProcess]:
    """
    For each network namespace that has processes, the one with the lowest pid (as
    ``ip netns identify`` would be asked the other way round).

    :return: ``struct net *`` address -> the process
    """
    path = _cgroup_path_reader(prog, errors)
    out: dict[int, NetnsProcess] = {}
    for pid, comm, net, cgrp in task_netns(prog, errors):
        if net not in out:
            out[net] = NetnsProcess(pid, comm, path(cgrp))
    return out


def _cgroup_path_reader(prog: Program, errors: WalkErrors | None) -> Callable[[int], str | None]:
    """
    ``struct cgroup *`` -> its path (cached per cgroup); None for a task with none, or one that
    cannot be read (counted in ``errors`` as a task).
    """
    from drgn_ss.kernel.cgroup import CgroupPaths  # only for --all-netns and --containers: start-up

    paths = CgroupPaths(kernel_facts(prog), kernel_memory(prog), True, kernel_layout(prog).kernfs_parent_rcu)

    def path(cgrp: int) -> str | None:
        if not cgrp:
            return None
        try:
            return paths.path(cgrp)
        except FaultError as e:
            tolerate(errors, "tasks", e)
            return None

    return path


def process_cgroups(prog: Program, errors: WalkErrors | None = None) -> dict[int, str]:
    """Every process's cgroup v2 path (as /proc/PID/cgroup's ``0::`` line), by pid."""
    path = _cgroup_path_reader(prog, errors)
    return {pid: found for pid, _comm, _net, cgrp in task_netns(prog, errors)
            if (found := path(cgrp)) is not None}


def netns_of(prog: Program, spec: str) -> int:
    """
    The network namespace ``--netns`` names: its inode number (as /proc/PID/ns/net and
    ``lsns -t net`` show it), a pid (the process's namespace), or, on the live local kernel,
    a path to a namespace file (/run/netns/NAME, /proc/PID/ns/net).

    :return: ``struct net *`` address
    :raises ValueError: if there is no such namespace or process
    """
    try:
        return _netns_of(prog, spec)
    except FaultError as e:
        raise ValueError(f"--netns {spec}: the network namespace list could not be read whole "
                         f"({e})") from None


def _netns_of(prog: Program, spec: str) -> int:
    if not spec.isdigit():
        if not is_local_live(prog):
            raise ValueError(f"--netns {spec}: give an inode number or a pid (a path names a namespace "
                             "of this machine's kernel only)")
        try:
            number = os.stat(spec).st_ino
        except OSError as e:
            raise ValueError(f"--netns {spec}: {e.strerror}") from None
        net = netns_by_inode(prog, number)
        if net is None:
            raise ValueError(f"--netns {spec}: not a network namespace (inode {number})")
        return net
    number = int(spec)
    net = netns_by_inode(prog, number)
    if net is not None:
        return net
    errors = WalkErrors()
    for pid, _comm, task_net, _cgrp in task_netns(prog, errors):
        if pid == number:
            return task_net
    cut = f" of those that could be read (could not read {errors.describe()})" if errors else ""
    raise ValueError(f"--netns {spec}: no network namespace has that inode number, and no process "
                     f"that pid{cut}")


def own_netns(prog: Program) -> int:
    """
    The network namespace ss would list found without debug info:
    on the live local kernel, the one this process runs in; otherwise ``init_net``.

    :return: ``struct net *`` address
    """
    if is_local_live(prog):
        net = netns_by_inode(prog, os.stat("/proc/self/ns/net").st_ino)
        if net is not None:
            return net
    return kernel_facts(prog).symbol("init_net")


def local_port_range(prog: Program, net: int) -> tuple[int, int]:
    """``net.ipv4.ip_local_port_range`` of a namespace: ss does not name ports in it."""
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    off = facts.offset("struct net", "ipv4.ip_local_ports.range")
    try:
        if kernel_layout(prog).local_ports_packed:
            packed = mem.read_u32(net + off)
            return packed & 0xFFFF, packed >> 16
        raw = mem.read(net + off, 8)
        return int.from_bytes(raw[:4], "little", signed=True), int.from_bytes(raw[4:], "little", signed=True)
    except FaultError:
        return 1024, 4999  # ss's own fallback


def ifnames(prog: Program, net: int) -> dict[int, str]:
    """
    Every interface of a namespace, by index: a raw walk of ``net->dev_base_head``
    (``net_device.dev_list``), which every kernel has. Names are as the kernel has them,
    decoded with errors="surrogateescape" (a user names interfaces: the text escapes them).

    :param net: ``struct net *`` address
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    head = net + facts.offset("struct net", "dev_base_head")
    link = facts.offset("struct net_device", "dev_list")
    ifindex = facts.offset("struct net_device", "ifindex")
    name = facts.offset("struct net_device", "name")
    out: dict[int, str] = {}
    limit = object_limit(prog, "struct net_device")
    for pos in list_nodes(mem, head, limit, "interface list"):
        dev = pos - link
        out[mem.read_u32(dev + ifindex)] = c_string(mem.read(dev + name, 16), 0, 16, "surrogateescape")
    return out


def ifname_resolver(prog: Program, errors: WalkErrors | None = None) -> Callable[[int, int], str]:
    """
    A function (netns inode, ifindex) -> interface name, ``if%d`` when unknown (as ss).
    A namespace whose interface list cannot be read is counted in ``errors``.
    """
    names: dict[int, dict[int, str]] = {}

    def ifname(netns: int, ifindex: int) -> str:
        if netns not in names:
            try:
                net = netns_by_inode(prog, netns)
                names[netns] = ifnames(prog, net) if net is not None else {}
            except FaultError as e:
                names[netns] = {}  # unreadable (e.g. filtered out of a dump): ss's fallback name
                if errors is not None:
                    errors.count("interfaces", e)
        return names[netns].get(ifindex, f"if{ifindex}")

    return ifname
