"""--queues' text and JSON (drgn_ss.output.queues) on listeners' queues made by hand: ages as a
person reads them, the oldest and the most retransmits, peers as ss shows them, -v's lines."""

from __future__ import annotations

import socket

import pytest
from drgn_ss.output.cells import age_text
from drgn_ss.output.queues import peer_text, queue_fields, queue_lines, queue_text
from drgn_ss.sockets.queues import ListenerQueues, QueueEntry
from drgn_ss.sockets.record import AF_INET, AF_INET6
from drgn_ss.sockets.unix import AF_UNIX

V4 = socket.inet_aton("127.0.0.1")
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")


@pytest.mark.parametrize("ms, text", [
    (0, "0ms"), (999, "999ms"), (1000, "1s"), (2150, "2.1s"), (59_999, "59.9s"), (60_000, "1min0s"),
    (192_000, "3min12s"), (3_599_999, "59min59s"), (3_600_000, "1h00min"), (7_500_000, "2h05min"),
    (86_400_000, "1d00h"), (273_600_000, "3d04h"),
])
def test_age_text(ms: int, text: str) -> None:
    assert age_text(ms) == text


def test_peers_as_ss_shows_them() -> None:
    assert peer_text(QueueEntry(AF_INET, V4, 41000, 5)) == "127.0.0.1:41000"
    assert peer_text(QueueEntry(AF_INET6, V6, 443, 5)) == "[2001:db8::1]:443"
    assert peer_text(QueueEntry(AF_UNIX, b"", 12345, None)) == "* 12345"


def _tcp() -> ListenerQueues:
    accept = (QueueEntry(AF_INET, V4, 40001, 2150), QueueEntry(AF_INET, V4, 40002, 900))
    syn = (QueueEntry(AF_INET, V4, 40003, 3000, 0), QueueEntry(AF_INET6, V6, 40004, 61_000, 2))
    return ListenerQueues(2, 128, accept, syn, 7)


def test_tcp_listener_text_and_json() -> None:
    q = _tcp()
    assert queue_text(q, False) == " accept:(2/128,oldest=2.1s) syn:(2,oldest=1min1s,retrans=2) drops:7"
    fields = queue_fields(q, False)
    assert fields["accept_queue"] == {"len": 2, "max": 128, "oldest_ms": 2150, "entries": [
        {"peer": "127.0.0.1:40001", "age_ms": 2150}, {"peer": "127.0.0.1:40002", "age_ms": 900}]}
    assert fields["syn_queue"]["len"] == 2 and fields["syn_queue"]["oldest_ms"] == 61_000
    assert fields["syn_queue"]["entries"][1] == {"peer": "[2001:db8::1]:40004", "age_ms": 61_000,
                                                 "retrans": 2}
    assert fields["drops"] == 7


def test_verbose_lines_oldest_first() -> None:
    assert queue_lines(_tcp()) == ("\n\taccept 127.0.0.1:40001 age=2.1s\n\taccept 127.0.0.1:40002 age=900ms"
                                   "\n\tsyn [2001:db8::1]:40004 age=1min1s retrans=2"
                                   "\n\tsyn 127.0.0.1:40003 age=3s retrans=0")


def test_empty_queues_and_unix() -> None:
    assert queue_text(ListenerQueues(0, 4096, (), (), 0), False) == " accept:(0/4096) syn:(0) drops:0"
    unix = ListenerQueues(1, 8, (QueueEntry(AF_UNIX, b"", 99, None),), (), 0)
    assert queue_text(unix, True) == " accept:(1/8) drops:0"
    assert queue_lines(unix) == "\n\taccept * 99"
    assert queue_fields(unix, True)["syn_queue"] is None
    assert queue_fields(unix, True)["accept_queue"]["oldest_ms"] is None
    assert queue_fields(None, False) == {"accept_queue": None, "syn_queue": None, "drops": None}


def test_ages_text_and_json() -> None:
    from drgn_ss.output.ages import ages_fields, ages_text
    from drgn_ss.sockets.ages import SocketAges

    known = SocketAges(120, 4000, 0, 65_000, 250)
    assert ages_text(known) == (" age:(last_recv=120ms,last_send=4s,last_ack=0ms,oldest_unread=1min5s,"
                                "oldest_unacked=250ms)")
    assert ages_fields(known) == {"ages": {"last_recv_ms": 120, "last_send_ms": 4000, "last_ack_ms": 0,
                                           "oldest_unread_ms": 65_000, "oldest_unacked_ms": 250}}
    unknown = known._replace(oldest_unread_ms=None, oldest_unacked_ms=None)
    assert ages_text(unknown) == " age:(last_recv=120ms,last_send=4s,last_ack=0ms)"
    assert ages_fields(None) == {"ages": None}
