"""ss's columns: widths, the render points of its token buffer, and the padded lines
(misc/ss.c render(), buf_chunk_new(), field_next()).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import NamedTuple

from drgn_ss.kernel.native import native

__all__ = [
    "BUF_CHUNK", "BUF_CHUNKS_MAX", "BUF_CHUNK_DATA", "CHUNK_LINES", "COLUMNS", "COL_PROCESS", "Column",
    "LEFT", "RIGHT", "TokenBuffer", "column_token_bytes", "layout", "layout_columns", "render_breaks",
]

LEFT, RIGHT = "left", "right"


class Column(NamedTuple):
    """One of ss's columns: its header, its alignment, and the text before it (misc/ss.c columns[])."""

    header: str
    align: str
    ldelim: str


COLUMNS = (
    Column("Netid", LEFT, ""),
    Column("State", LEFT, " "),
    Column("Recv-Q", LEFT, " "),
    Column("Send-Q", LEFT, " "),
    Column("Local Address:", RIGHT, " "),
    Column("Port", LEFT, ""),
    Column("Peer Address:", RIGHT, " "),
    Column("Port", LEFT, ""),
    Column("Process", LEFT, ""),
    Column("", LEFT, ""),
)


def layout(rows: Iterable[Sequence[str]], disabled: frozenset[int] = frozenset(),
           screen_width: int | None = None, header: bool = True) -> str:
    """
    Lay out rows of cells (one per enabled column, in order) as ss's render() does.

    :param screen_width: the terminal's width; None for ss's compact layout.
    :param header: whether the first row is the header line.
    """
    columns = [list(column) for column in zip(*rows)]
    return "".join(layout_columns(columns, disabled, screen_width, header))


#: Lines per chunk :func:`layout_columns` yields.
CHUNK_LINES = 4096

#: misc/ss.c buffers cells in chunks of BUF_CHUNK bytes (each chunk begins with two
#: pointers), and renders what it holds at the end of a line once BUF_CHUNKS_MAX are in use.
BUF_CHUNK = 1024 * 1024
BUF_CHUNK_DATA = BUF_CHUNK - 16
BUF_CHUNKS_MAX = 5
#: ss's COL_EXT (headed "Process"): where a socket's line ends, not yet flushed.
COL_PROCESS = 8


class TokenBuffer:
    """
    The byte accounting of ss's output buffer (buf_update(), field_flush(), field_next()),
    to know after which line ss renders. ss sizes each column over what it has buffered
    (about 4 MB of cells: some 60,000 lines), prints those lines, and goes on with widths
    that only grow; a listing that long has narrower columns at its start than at its end.

    Each cell is a token: a 16-bit length, then its bytes, the next token aligned to 2.
    A token that does not fit in the current chunk moves whole to a new one.
    """

    def __init__(self) -> None:
        self.chunks = 0  # chunks in use since the last render
        self.used = 0  # bytes used in the last chunk, including the open token's length

    def _write(self, n: int) -> None:
        # vout() + buf_update(): vsnprintf() needs room for the NUL as well.
        if n == 0:
            return  # ss does not print into an empty cell
        if not self.chunks:
            self.chunks, self.used = 1, 2
        if n < BUF_CHUNK_DATA - self.used:
            self.used += n
        else:
            self.chunks += 1
            self.used = 2 + n

    def _flush(self, n: int) -> None:
        # field_flush(): the next token's length goes at the next even offset.
        pad = n & 1
        if BUF_CHUNK_DATA - self.used - pad < 2:
            self.chunks += 1
            self.used = 2
        else:
            self.used += pad + 2

    def add_line(self, total: int, row: Sequence[str]) -> bool:
        """
        Buffer a line; True if ss renders here (the check comes when the next line starts,
        before the line's last cell is flushed).

        :param total: the bytes its cells take as tokens (:func:`column_token_bytes`).
        """
        if self.chunks and self.used + total + 4 < BUF_CHUNK_DATA:
            # No chunk boundary inside the line: only the render check can happen.
            if self.chunks >= BUF_CHUNKS_MAX:
                self.chunks = self.used = 0
                return True
            self.used += total
            return False
        sizes = _byte_lengths(row)
        last = len(sizes) - 1
        for i, n in enumerate(sizes):
            self._write(n)
            if i < last:
                self._flush(n)
        # field_next() checks before it flushes the last cell: if that flush is what takes
        # the 5th chunk, ss renders after the next line, not this one.
        if self.chunks >= BUF_CHUNKS_MAX:
            self.chunks = self.used = 0
            return True
        self._flush(sizes[last])
        return False


def _even(n: int) -> int:
    return n + (n & 1)


#: :func:`_even` of the lengths most cells have.
_EVEN = [_even(n) for n in range(4096)]


def column_token_bytes(columns: Sequence[Sequence[str]]) -> list[int]:
    """
    The bytes each line's cells take in ss's buffer (a cell: 2 + its length, rounded up to
    even), a column at a time.
    """
    totals = [2 * len(columns)] * (len(columns[0]) if columns else 0)
    for column in columns:
        lengths = _byte_lengths(column)
        even = _EVEN.__getitem__ if max(lengths, default=0) < len(_EVEN) else _even
        totals = list(map(operator.add, totals, map(even, lengths)))
    return totals


def _byte_lengths(cells: Sequence[str]) -> list[int]:
    """The lengths of cells as ss counts them, in bytes (characters, unless one is not ASCII)."""
    if "".join(cells).isascii():
        return list(map(len, cells))
    return [len(cell.encode()) for cell in cells]


def render_breaks(columns: Sequence[Sequence[str]]) -> list[int]:
    """The rows after which ss renders what it has buffered (see :class:`TokenBuffer`)."""
    if not columns:
        return []
    tokens = TokenBuffer()
    add_line = tokens.add_line
    rows = zip(column_token_bytes(columns), zip(*columns))
    return [i for i, (total, row) in enumerate(rows) if add_line(total, row)]


def layout_columns(columns: Sequence[list[str]], disabled: frozenset[int] = frozenset(),
                   screen_width: int | None = None, header: bool = True) -> Iterator[str]:
    """
    :func:`layout` of rows given as columns of cells, as chunks of at most
    :data:`CHUNK_LINES` lines to write as they are made. Like ss, it renders every few
    megabytes of cells (see :class:`TokenBuffer`), so a long listing streams.
    """
    enabled = [i for i in range(len(COLUMNS)) if i not in disabled]
    nrows = len(columns[0]) if columns else 0
    fast = native()
    breaks = fast.render_breaks(columns) if fast is not None else render_breaks(columns)
    max_len = dict.fromkeys(enabled, 0)
    start = 0
    for row in breaks:
        yield from _render_batch(columns, start, row + 1, row + 1, enabled, max_len, screen_width, fast)
        start = row + 1
    if start < nrows:
        # The last line's "Process" cell is still open when ss renders at the end: it is not
        # measured (unless that line is the header, whose cells are all flushed).
        measured = nrows if header and nrows == 1 else nrows - 1
        yield from _render_batch(columns, start, nrows, measured, enabled, max_len, screen_width, fast)


def _render_batch(columns: Sequence[list[str]], start: int, stop: int, measured: int,
                  enabled: list[int], max_len: dict[int, int], screen_width: int | None,
                  fast: ModuleType | None) -> Iterator[str]:
    """
    Print one render()'s lines, rows [start, stop), the widths measured over rows
    [start, measured) (and, if that is not all, the last row less its Process cell);
    ``max_len`` carries the measured widths across renders; ``fast``: :func:`native`.
    """
    if fast is not None:
        longest = fast.max_lengths(columns, start, measured)
    else:
        longest = [max(_byte_lengths(column[start:measured]), default=0) for column in columns]
    for i, n in zip(enabled, longest):
        max_len[i] = max(max_len[i], n)
    if measured < stop:
        for i, column in zip(enabled, columns):
            if i != COL_PROCESS:
                max_len[i] = max(max_len[i], len(column[stop - 1].encode()))
    width = _widths(enabled, max_len, screen_width)
    # Each cell after its delimiter, padded to its width less the delimiter's (0: as it is).
    delims = [COLUMNS[i].ldelim if n else "" for n, i in enumerate(enabled)]
    pads = [max(width[i] - len(delim), 0) for i, delim in zip(enabled, delims)]
    right = [COLUMNS[i].align == RIGHT for i in enabled]
    # Every ASCII row is one str.format() call (or C's format_lines() for a chunk of them);
    # the others are padded by their bytes.
    fmt = []
    for delim, pad, to_right in zip(delims, pads, right):
        field = "{:" + (">" if to_right else "<") + str(pad) + "}" if pad else "{}"
        fmt.append(delim.replace("{", "{{").replace("}", "}}") + field)
    line_format = ("".join(fmt) + "\n").format
    for first in range(start, stop, CHUNK_LINES):
        last = min(first + CHUNK_LINES, stop)
        if fast is not None:  # the same lines, in C; None if a cell is not ASCII
            text = fast.format_lines(columns, first, last, pads, right, delims)
            if text is not None:
                yield text
                continue
        lines = []
        for row in zip(*(column[first:last] for column in columns)):
            line = line_format(*row)
            if not line.isascii():
                line = _line_by_bytes(row, enabled, width)
            lines.append(line)
        yield "".join(lines)


def _line_by_bytes(row: Sequence[str], enabled: list[int], width: dict[int, int]) -> str:
    """One line padded as ss pads it, counting bytes (for cells that are not ASCII)."""
    line = []
    for n, (i, cell) in enumerate(zip(enabled, row)):
        col = COLUMNS[i]
        data = cell.encode()
        printed = 0
        if n:
            line.append(col.ldelim)
            printed = len(col.ldelim)
        w = width[i]
        if w and col.align == RIGHT:
            line.append(" " * max(w - len(data) - printed, 0))
        line.append(cell)
        printed += len(data)
        if w and col.align == LEFT:
            line.append(" " * max(w - printed, 0))
    return "".join(line) + "\n"


def _widths(enabled: list[int], max_len: dict[int, int], screen_width: int | None) -> dict[int, int]:
    # render_calc_width(): first pass, the measured widths.
    limit = screen_width if screen_width is not None else 1 << 62
    width: dict[int, int] = {}
    first = True
    for i in enabled:
        w = max_len[i] + len(COLUMNS[i].ldelim) if not first and max_len[i] else max_len[i]
        width[i] = min(w, limit)
        if width[i]:
            first = False
    if screen_width is None:
        return width
    # Second pass: break lines where the screen is full and share out the spare room.
    cols = [i for i in enabled if width[i]]
    line_start = 0
    length = 0
    k = 0
    while k < len(cols):
        length += width[cols[k]]
        last = k == len(cols) - 1
        if not last and length < screen_width:
            k += 1
            continue
        if length != screen_width:
            end = k
            if length > screen_width and k > line_start:
                length -= width[cols[k]]
                end = k - 1
            line = cols[line_start : end + 1]
            pad = screen_width - length
            spacing, rem = divmod(pad, len(line)) if line else (0, 0)
            for i in reversed(line):
                width[i] += spacing
                if rem:
                    width[i] += 1
                    rem -= 1
            k = end
        line_start = k + 1
        length = 0
        k += 1
    return width
