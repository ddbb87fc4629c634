"""cgroup v2 paths of sockets and tasks (``struct cgroup`` -> ``struct kernfs_node``).
"""

from __future__ import annotations

from drgn import FaultError
from drgn_ss.kernel.facts import KernelFacts
from drgn_ss.kernel.memory import Memory, read_c_string

__all__ = ["CgroupPaths"]


class CgroupPaths:
    """
    The cgroup v2 paths of sockets (``ss -e``'s ``cgroup:``), from the raw value of
    ``sk->sk_cgrp_data``, read without drgn Objects: what drgn's
    ``cgroup_path(sock_cgroup_ptr(sk))`` gives, with debug info or without.

    :param pointer: ``sk_cgrp_data`` holds a ``struct cgroup *`` (5.15+) rather than ``val``
    :param parent_rcu: ``struct kernfs_node`` calls its parent ``__parent`` (6.15+)
    """

    #: Deeper than any cgroup tree: a parent chain this long is taken for a loop.
    MAX_DEPTH = 512

    def __init__(self, facts: KernelFacts, mem: Memory, pointer: bool, parent_rcu: bool) -> None:
        self.facts, self.mem, self.pointer = facts, mem, pointer
        self.kn = facts.offset("struct cgroup", "kn")
        self.parent = facts.offset("struct kernfs_node", "__parent" if parent_rcu else "parent")
        self.name = facts.offset("struct kernfs_node", "name")
        self.paths: dict[int, str] = {}

    def cgroup(self, raw: int) -> int:
        """
        ``sock_cgroup_ptr()``: the ``struct cgroup *`` of a socket.

        :param raw: ``sk->sk_cgrp_data.cgroup`` (5.15+) or ``.val`` (before: a value with
            either of its low two bits set, or 0, stands for the default hierarchy's root)
        """
        if self.pointer or (raw and not raw & 3):
            return raw
        return self.facts.symbol("cgrp_dfl_root") + self.facts.offset("struct cgroup_root", "cgrp")

    def path(self, raw: int) -> str:
        """
        The cgroup's path in its hierarchy, "/" for the root; cached per cgroup.

        :param raw: as for :meth:`cgroup` (built with ``pointer`` True: a ``struct cgroup *``)
        """
        cgrp = self.cgroup(raw)
        if cgrp not in self.paths:
            self.paths[cgrp] = self.kernfs_path(self.mem.read_u64(cgrp + self.kn)) or "/"
        return self.paths[cgrp]

    def kernfs_path(self, kn: int) -> str:
        """
        drgn's ``kernfs_path()``: the names from the root's down to ``kn``'s, joined by "/".

        :param kn: ``struct kernfs_node *``
        :raises FaultError: if a node cannot be read, or the chain does not end
        """
        if not kn:
            return "(null)"
        mem, names = self.mem, []
        for _ in range(self.MAX_DEPTH):
            names.append(read_c_string(mem, mem.read_u64(kn + self.name)))
            parent = mem.read_u64(kn + self.parent)
            if not parent:
                break
            kn = parent
        else:
            raise FaultError("kernfs parent chain too long: a loop?", kn)
        if len(names) == 1:
            return "/"
        return b"/".join(reversed(names)).decode(errors="surrogateescape")
