"""A plain listing's TCP and UDP sockets as rows (a ``drgn_ss._fast.SockTable``): their
cells and lines made in C, without a record or a Python object per cell.

What :class:`~drgn_ss.output.text.Formatter` does with records is the reference: the
functions here are used where its lines would show what the rows hold alone
(:func:`plain_rows`), and make the same cells (:func:`row_columns`) and the same lines
(:func:`row_lines`); tests compare them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

from drgn_ss.kernel.native import native
from drgn_ss.output.columns import COLUMNS
from drgn_ss.sockets.record import Socket

#: A drgn_ss.output.text.Formatter (which imports this module: not named here, no cycle).
Formatter = Any
__all__ = ["plain_rows", "row_columns", "row_lines"]


def plain_rows(fmt: Formatter, socks: Sequence[Socket]) -> bool:
    """
    Whether ``socks`` are the rows of a ``drgn_ss._fast.SockTable`` whose lines show what
    its rows hold alone: no timer, detail, memory, option, namespace or device name.
    """
    fast = native()
    extras = (fmt.skmem, fmt.tcp_info, fmt.tos, fmt.sockopts, fmt.filters, fmt.netns_tags, fmt.trailer)
    return (fast is not None and isinstance(socks, fast.SockTable) and not fmt.annotations
            and all(x is None for x in extras)
            and not (fmt.timers or fmt.details or fmt.show_cgroup or fmt.peers)
            and fmt.owners_by != "line" and not cast(Any, socks).any_ifindex())


def _holder_map(fmt: Formatter) -> Any:
    """``fmt``'s owners where C makes their users cells (a HolderMap, one holder a process), else None."""
    fast = cast(Any, native())
    if isinstance(fmt.owners, fast.HolderMap) and not fmt.threads and fmt.runs_in is None:
        return fmt.owners
    return None


def row_columns(fmt: Formatter, socks: Sequence[Socket], states: tuple[str, ...]) -> list[list[str]]:
    """:meth:`Formatter.columns` of rows (:func:`plain_rows`), without making their records."""
    fast, n = cast(Any, native()), len(socks)
    cells = list(fast.table_cells(socks, fmt._host_cells, fmt._service_cells, fmt._queues, states,
                                  fmt.numeric, fmt.ephemeral))
    held = _holder_map(fmt)
    if held is not None:
        process = fast.table_users_cells(socks, held, fmt._comm_names)  # by sock
    else:
        by = "address" if fmt.owners_by == "sock" else "ino"
        process = [""] * n if fmt.owners is None else fmt._users_cells(cast(Any, socks).keys(by))
    return [*cells, process, [""] * n]


def row_lines(fmt: Formatter, socks: Sequence[Socket], keep: list[int], header: bool,
              states: tuple[str, ...]) -> Iterator[str] | None:
    """
    The lines of :func:`~drgn_ss.output.text.render_sockets` for rows (:func:`plain_rows`)
    with no screen width, made in C (``drgn_ss._fast.row_lines``), in chunks; None where
    they are not rows, or their owners' cells are made otherwise (by inode, -T, a holder
    map with subflows'): the records' way then.
    """
    if not plain_rows(fmt, socks):
        return None
    held = _holder_map(fmt)
    if fmt.owners is not None and held is None:
        return None
    fast = cast(Any, native())
    lines = fast.row_lines(socks, held, fmt._comm_names, fmt._host_cells, fmt._service_cells, fmt._queues,
                           states, fmt.numeric, fmt.ephemeral, keep,
                           [c.header for c in COLUMNS] if header else None)
    return cast(Iterator[str] | None, lines)
