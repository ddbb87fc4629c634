"""The ``ss`` command inside drgn (a drgn plugin: entry point group ``drgn.plugins``).

At the drgn prompt, on the live kernel, a vmcore or ``--qemu``::

    >>> %ss -tanp
    >>> %ss -tn state established 'dport = :443'
    >>> %ss -tanp --json > /tmp/sockets.json

and from a script, ``drgn.commands.run_command(prog, "ss -tanp")``. The options are
``drgn-ss``'s (``%ss --help``); drgn's command line reads ``<``, ``>`` and ``|`` as
redirections and pipes, so a filter expression that holds them is quoted, as in a shell.
The command returns ss's exit status (0 listed, 3 partial; 1 and 2 after an error line).

The helpers themselves are importable at the prompt: ``from drgn_ss.sockets.inet import
inet_sockets`` and the rest of :mod:`drgn_ss`.
"""

from __future__ import annotations

from typing import Any

from drgn import Program
from drgn.commands import parse_shell_command
from drgn.commands.linux import linux_kernel_custom_command

__all__ = []


def _run(prog: Program, args: list[str]) -> int:
    from drgn_ss.commands.ss import run  # imported when the command runs, not when drgn starts

    try:
        return run(prog, args, prog_name="ss")
    except SystemExit as e:  # --help: printed; the prompt stays
        return e.code if isinstance(e.code, int) else 0


@linux_kernel_custom_command(
    name="ss",
    description="list sockets of every family and their processes, as ss(8) does",
    usage="**ss** [*OPTION*]... [**state** *NAME*]... [*EXPRESSION*]",
    long_description="List the kernel's sockets (TCP, UDP, raw, unix, packet, netlink, MPTCP, "
    "SCTP, vsock), read from its memory, with ss's "
    "options, filters and output (drgn-ss). Run 'ss --help' for the options.",
    parse=parse_shell_command,
)
def _cmd_ss(prog: Program, name: str, args: Any, **kwargs: Any) -> int:
    return _run(prog, list(args))
