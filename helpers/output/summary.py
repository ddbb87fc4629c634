"""ss's ``--summary`` text of a :class:`~drgn_ss.sockets.counters.SockStat`.
"""

from __future__ import annotations

from drgn_ss.sockets.counters import SockStat

__all__ = ["format_summary"]


def format_summary(s: SockStat) -> str:
    """What ``ss -s`` prints (misc/ss.c print_summary()); "?" for what could not be read."""
    def add(*values: int | None) -> int | None:
        return None if None in values else sum(v for v in values if v is not None)

    def sub(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a - b

    def num(value: int | None, width: int = 0) -> str:
        return ("?" if value is None else str(value)).ljust(width)

    closed = sub(s.tcp_total, sub(add(s.tcp4_hashed, s.tcp6_hashed), s.tcp_tws))
    lines = [
        f"Total: {num(s.sockets)}",
        f"TCP:   {num(add(s.tcp_total, s.tcp_tws))} (estab {num(s.tcp_estab)}, closed {num(closed)}, "
        f"orphaned {num(s.tcp_orphans)}, timewait {num(s.tcp_tws)})",
        "",
        "Transport Total     IP        IPv6",
    ]
    rows = (("RAW", s.raw4, s.raw6), ("UDP", s.udp4, s.udp6), ("TCP", s.tcp4_hashed, s.tcp6_hashed),
            ("INET", add(s.raw4, s.udp4, s.tcp4_hashed), add(s.raw6, s.udp6, s.tcp6_hashed)),
            ("FRAG", s.frag4, s.frag6))
    for name, four, six in rows:
        lines.append(f"{name}\t  {num(add(four, six), 9)} {num(four, 9)} {num(six, 9)}")
    return "\n".join(lines) + "\n\n"
