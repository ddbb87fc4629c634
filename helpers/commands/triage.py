"""What is wrong with the sockets listed, past what ss shows: --queues and -v (each
listener's accept and SYN queues, :mod:`drgn_ss.sockets.queues`) and --ages (each TCP
socket's, :mod:`drgn_ss.sockets.ages`), wired into a listing's
:class:`~drgn_ss.output.text.Formatter`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from drgn import Program
from drgn_ss.commands.common import UsageError
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.output.text import Formatter
from drgn_ss.sockets.record import TCP_LISTEN, Socket
from drgn_ss.sockets.unix import AF_UNIX

__all__ = ["prepare_triage_options", "triage_listing"]


def prepare_triage_options(args: argparse.Namespace) -> None:
    """Check --queues, -v and --ages before the kernel is opened."""
    if args.verbose and not args.queues:
        raise UsageError("-v shows each connection waiting on a listener: give --queues too")
    if args.queues and not (args.listening or args.all):
        raise UsageError("--queues shows listeners' queues: give -l or -a too")


def triage_listing(prog: Program, args: argparse.Namespace, nets: Sequence[int], socks: Sequence[Socket],
                   fmt: Formatter, errors: WalkErrors) -> None:
    """Tell ``fmt`` what --queues and --ages add to the listed sockets."""
    if args.queues:
        _queues(prog, args, nets, socks, fmt, errors)
    if args.ages:
        from drgn_ss.output.ages import ages_fields, ages_text
        from drgn_ss.sockets.ages import socket_ages

        ages = socket_ages(prog, socks, errors)
        fmt.annotate(lambda s: ages_text(ages[s.address]) if s.address in ages else "",
                     lambda s: ages_fields(ages.get(s.address)))


def _queues(prog: Program, args: argparse.Namespace, nets: Sequence[int], socks: Sequence[Socket],
            fmt: Formatter, errors: WalkErrors) -> None:
    """Each listed listener's queues (its SYN queue from a walk of the established table)."""
    from drgn_ss.output.queues import queue_fields, queue_lines, queue_text
    from drgn_ss.sockets.inet import inet_sockets
    from drgn_ss.sockets.queues import listener_queues

    listeners = [s for s in socks if s.state == TCP_LISTEN and (s.proto == "tcp" or s.family == AF_UNIX)]
    requests: list[Socket] = []
    if any(s.proto == "tcp" for s in listeners):
        walked = inet_sockets(prog, nets, ("tcp",), False, True, errors, inodes=False, cgroups=False)
        requests = [s for s in walked if s.kind == "request"]
    queues = listener_queues(prog, listeners, requests, errors)

    def text(s: Socket) -> str:
        q = queues.get(s.address)
        return "" if q is None else queue_text(q, s.family == AF_UNIX)

    fmt.annotate(text, lambda s: queue_fields(queues.get(s.address), s.family == AF_UNIX))
    if args.verbose:
        fmt.trailer = lambda s: queue_lines(queues[s.address]) if s.address in queues else ""
