"""Network namespaces: which one to list, and the per-namespace settings ss consults."""

from __future__ import annotations

import os
from collections.abc import Callable

from drgn import FaultError, Program
from drgn_ss.layout import is_local_live, kernel_facts, kernel_layout, kernel_memory
from drgn_ss.raw import c_string, list_nodes
from drgn_ss.tables import WalkErrors

#: Most namespaces followed before the list is taken for a loop.
MAX_NETNS = 1 << 20


def raw_netns_by_inode(prog: Program, inum: int) -> int | None:
    """
    Find a network namespace by inode number by a raw walk of ``net_namespace_list``.

    :return: ``struct net *`` address, or None
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    link = facts.offset("struct net", "list")
    ns_inum = facts.offset("struct net", "ns.inum")
    for pos in list_nodes(mem, facts.symbol("net_namespace_list"), MAX_NETNS, "network namespace list"):
        if mem.read_u32(pos - link + ns_inum) == inum:
            return pos - link
    return None


def raw_own_netns(prog: Program) -> int:
    """
    The network namespace ss would list found without debug info:
    on the live local kernel, the one this process runs in; otherwise ``init_net``.

    :return: ``struct net *`` address
    """
    if is_local_live(prog):
        net = raw_netns_by_inode(prog, os.stat("/proc/self/ns/net").st_ino)
        if net is not None:
            return net
    return kernel_facts(prog).symbol("init_net")


def raw_local_port_range(prog: Program, net: int) -> tuple[int, int]:
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


def raw_ifnames(prog: Program, net: int) -> dict[int, str]:
    """
    Every interface of a namespace, by index: a raw walk of ``net->dev_base_head``
    (``net_device.dev_list``), which every kernel has.

    :param net: ``struct net *`` address
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    head = net + facts.offset("struct net", "dev_base_head")
    link = facts.offset("struct net_device", "dev_list")
    ifindex = facts.offset("struct net_device", "ifindex")
    name = facts.offset("struct net_device", "name")
    out: dict[int, str] = {}
    for pos in list_nodes(mem, head, MAX_NETNS, "interface list"):
        dev = pos - link
        out[mem.read_u32(dev + ifindex)] = c_string(mem.read(dev + name, 16), 0, 16)
    return out


def raw_ifname_resolver(prog: Program, errors: WalkErrors | None = None) -> Callable[[int, int], str]:
    """
    A function (netns inode, ifindex) -> interface name, ``if%d`` when unknown (as ss).
    A namespace whose interface list cannot be read is counted in ``errors``.
    """
    names: dict[int, dict[int, str]] = {}

    def ifname(netns: int, ifindex: int) -> str:
        if netns not in names:
            try:
                net = raw_netns_by_inode(prog, netns)
                names[netns] = raw_ifnames(prog, net) if net is not None else {}
            except FaultError as e:
                names[netns] = {}  # unreadable (e.g. filtered out of a dump): ss's fallback name
                if errors is not None:
                    errors.count("interfaces", e)
        return names[netns].get(ifindex, f"if{ifindex}")

    return ifname
