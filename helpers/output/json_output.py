"""Sockets as JSON objects: the fields and their order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence

from drgn_ss.output.columns import CHUNK_LINES
from drgn_ss.output.text import Formatter
from drgn_ss.sockets.record import Socket

__all__ = ["JSON_FIELDS", "render_json"]

#: The fields of a JSON socket object, in order, and when they are there (docs/usage.md, "JSON output").
JSON_FIELDS = (
    "netid", "family", "state", "recv_q", "send_q", "local_address", "local_port", "peer_address",
    "peer_port", "interface", "v6only", "netns", "kind", "sk",
    "local_service", "peer_service",  # without -n
    "owners",  # -p
    "netns_pid", "netns_command", "netns_cgroup",  # --all-netns
    "netns_container",  # --all-netns --containers
    "skmem",  # -m
    "tcp_info",  # -i
    "timer",  # -o or -e
    "uid", "inode", "cookie", "cgroup", "shutdown",  # -e
    "kernel_user",  # --kernel-users
    "kernel_addresses",  # --addresses
)


def render_json(socks: Sequence[Socket], fmt: Formatter, lines: bool) -> Iterator[str]:
    """
    ``socks`` as JSON, in chunks to write as they come: one array (``lines`` False), or
    one object per line (NDJSON). Plain ASCII: every character past it is escaped, so no
    byte of the output can move a terminal's cursor.
    """
    encode = json.JSONEncoder(ensure_ascii=True, check_circular=False, separators=(",", ":")).encode
    objects = fmt.objects(socks)
    if not lines:
        yield "["
    first = True
    while True:
        chunk = [encode(obj) for obj in itertools.islice(objects, CHUNK_LINES)]
        if not chunk:
            break
        if lines:
            yield "\n".join(chunk) + "\n"
        else:
            yield ("\n" if first else ",\n") + ",\n".join(chunk)
        first = False
    if not lines:
        yield "]\n" if first else "\n]\n"
