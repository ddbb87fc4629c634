"""drgn_ss._fast: the hot loops in C (helpers/_fast.c)."""

from typing import Any

def walk_sockets(
    mem: tuple[object, ...], heads: list[int], link: int, nulls: bool, size: int, least: int,
    max_chain: int, layout: dict[str, object], net: int, tcp: bool, inodes: bool, now: int,
    hz: int, cls: type, proto: str, netns: int, kinds: tuple[str, str, str],
) -> tuple[list[Any], int, int, Any]: ...
