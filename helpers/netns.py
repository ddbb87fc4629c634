"""Network namespaces: which one to list, and the per-namespace settings ss consults."""

from __future__ import annotations

import os
from collections.abc import Callable

from drgn import FaultError, Object, Program
from drgn.helpers.linux.net import for_each_net, netdev_get_by_index
from drgn.helpers.linux.pid import find_task
from drgn_ss.layout import kernel_layout
from drgn_ss.owners import is_local_live


def own_netns(prog: Program) -> Object:
    """
    Get the network namespace ss would list: on the live local kernel, the one this
    process runs in; otherwise the initial namespace.

    :return: ``struct net *``
    """
    if is_local_live(prog):
        task = find_task(prog, os.getpid())
        if task:
            return task.nsproxy.net_ns.read_()
    return prog["init_net"].address_of_()


def netns_by_inode(prog: Program, inum: int) -> Object | None:
    """
    Find a network namespace by its inode number (``ns.inum``).

    :return: ``struct net *``, or None
    """
    for net in for_each_net(prog):
        if net.ns.inum.value_() == inum:
            return net
    return None


def local_port_range(net: Object) -> tuple[int, int]:
    """
    Get ``net.ipv4.ip_local_port_range`` of a namespace (ss does not name ports in it).

    :param net: ``struct net *``
    """
    ports = net.ipv4.ip_local_ports
    try:
        if kernel_layout(net.prog_).local_ports_packed:
            packed = ports.range.value_()
            return packed & 0xFFFF, packed >> 16
        return int(ports.range[0].value_()), int(ports.range[1].value_())
    except FaultError:
        return 1024, 4999  # ss's own fallback


def ifname_resolver(prog: Program) -> Callable[[int, int], str]:
    """A function (netns inode, ifindex) -> interface name, ``if%d`` when unknown (as ss)."""
    cache: dict[tuple[int, int], str] = {}

    def ifname(netns: int, ifindex: int) -> str:
        key = (netns, ifindex)
        if key not in cache:
            name = f"if{ifindex}"
            try:
                net = netns_by_inode(prog, netns)
                if net is not None:
                    dev = netdev_get_by_index(net, ifindex)
                    if dev:
                        name = dev.name.string_().decode(errors="replace")
            except FaultError:
                pass  # unreadable (e.g. filtered out of a dump): ss's fallback name
            cache[key] = name
        return cache[key]

    return ifname
