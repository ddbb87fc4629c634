"""drgn_ss._fast: the hot loops in C (helpers/_fast_*.c, a file per domain; _fast_module.c says which)."""

from collections.abc import Callable
from typing import Any

def walk_sockets(
    mem: tuple[object, ...], heads: list[int], link: int, nulls: bool, size: int, least: int,
    max_chain: int, layout: dict[str, object], nets: dict[int, int], tcp: bool, inodes: bool, now: int,
    hz: int, cls: type, proto: str, kinds: tuple[str, str, str], marker_base: int,
    head_at: Callable[[int], int] | None,
) -> tuple[list[Any], int, int, Any]: ...

def walk_unix(
    mem: tuple[object, ...], heads: list[int], link: int, size: int, least: int, max_chain: int,
    layout: dict[str, object], nets: dict[int, int], foreign_damage: bool, cls: type, extra_cls: type,
    netids: tuple[str, str, str], full: str, skb_limit: int, walked: set[int], node_lo: int, node_hi: int,
    live: bool,
) -> tuple[list[Any], int, int, Any]: ...

def socket_holders(
    mem: tuple[object, ...], tasks: list[tuple[int, str, int]], layout: dict[str, object], cls: type,
) -> tuple[dict[int, list[Any]], int, int, Any]: ...

def render_breaks(columns: list[list[str]]) -> list[int]: ...

def max_lengths(columns: list[list[str]], start: int, stop: int) -> list[int]: ...

def format_lines(
    columns: list[list[str]], start: int, stop: int, pads: list[int], right: list[bool], delims: list[str],
) -> str | None: ...

def users_cells(keys: Any, owners: dict[int, Any], names: Any) -> list[str]: ...

def unix_cells(
    socks: list[Any], names: dict[Any, str], name_text: Callable[[Any], str], queues: Any,
    states: tuple[str, ...],
) -> list[list[str]]: ...

def socket_cells(
    socks: list[Any], fields: tuple[int, ...], hosts: dict[Any, str], services: dict[Any, str],
    queues: dict[Any, str], states: tuple[str, ...], numeric: bool, ephemeral: tuple[int, int],
) -> list[list[str]]: ...

def btf_index(data: bytes, start: int, end: int) -> tuple[list[int], dict[tuple[int, int], int]]: ...

def kallsyms_find(
    names: bytes, count: int, token_table: bytes, token_index: bytes, long_names: bool,
    wanted: tuple[bytes, ...],
) -> list[tuple[int, str] | None]: ...
