"""tcp_get_info() on fixture values and ss 6.1's way of printing tcp_info (the kernel matrix
compares whole -i listings with ss's)."""

from __future__ import annotations

import pytest
from drgn_ss.output.tcpinfo import sprint_bw, tcp_info_text
from drgn_ss.sockets.record import TCP_ESTABLISHED, TCP_LISTEN
from drgn_ss.sockets.tcpinfo import _TP, TcpInfo, _tcp_get_info

HZ = 250


@pytest.mark.parametrize("bw, numeric, text", [
    (999.0, False, "999"), (1000.0, False, "1k"), (1234567.0, False, "1.23M"),
    (25429902913.0, False, "25.4G"), (2.5e12, False, "2.5T"), (25429902913.0, True, "25429902913"),
])
def test_sprint_bw(bw: float, numeric: bool, text: str) -> None:
    assert sprint_bw(bw, numeric) == text


def values(**changes: int) -> dict[str, int]:
    v = dict.fromkeys(("sk_pacing_rate", "sk_max_pacing_rate", "sk_ack_backlog", "sk_max_ack_backlog",
                       "icsk_backoff", "icsk_rto", "icsk_ack.ato", "icsk_ack.rcv_mss", "icsk_ack.lrcvtime",
                       "icsk_pmtu_cookie", "icsk_ca_ops", "rtt_min", *_TP), 0)
    v.update(sk_pacing_rate=(1 << 64) - 1, sk_max_pacing_rate=(1 << 64) - 1, reordering=3, snd_cwnd=10)
    v.update(changes)
    return v


def test_listener_shows_what_tcp_get_info_fills_for_listeners() -> None:
    info = _tcp_get_info(TCP_LISTEN, values(sk_ack_backlog=1, sk_max_ack_backlog=16, srtt_us=800),
                         [0, 0, 0], "cubic", 1000, HZ)
    assert (info.unacked, info.sacked, info.rtt) == (1, 16, 0)  # returns before reading the rest
    assert tcp_info_text(info, False, False) == " cubic cwnd:10 unacked:1"  # no "sacked" for listeners


def test_established_connection_as_ss_prints_it() -> None:
    """Values of a real loopback connection (6.1 guest) and the line ss printed for it."""
    v = values(**{
        "rx_opt.tstamp_ok": 1, "rx_opt.sack_ok": 1, "rx_opt.wscale_ok": 1, "rx_opt.snd_wscale": 7,
        "rx_opt.rcv_wscale": 7, "icsk_rto": 51, "mss_cache": 32741, "icsk_pmtu_cookie": 65535,
        "icsk_ack.rcv_mss": 536, "advmss": 65483, "bytes_acked": 1, "segs_out": 2, "segs_in": 1,
        "srtt_us": 103 << 3, "mdev_us": 51 << 2, "sk_pacing_rate": 6357475728, "delivered": 1,
        "rate_app_limited": 1, "rcvq_space.space": 65495, "rcv_ssthresh": 65495, "rtt_min": 103,
        "snd_wnd": 65483, "snd_ssthresh": 0x7FFFFFFF, "lsndtime": 1000 - 1467, "rcv_tstamp": 1000 - 1467,
        "icsk_ack.lrcvtime": 1000 - 1467})
    info = _tcp_get_info(TCP_ESTABLISHED, v, [0, 0, 0], "cubic", 1000, HZ)
    assert tcp_info_text(info, True, False) == (
        " ts sack cubic wscale:7,7 rto:204 rtt:0.103/0.051 mss:32741 pmtu:65535 rcvmss:536 advmss:65483"
        " cwnd:10 bytes_acked:1 segs_out:2 segs_in:1 send 25.4Gbps lastsnd:5868 lastrcv:5868 lastack:5868"
        " pacing_rate 50.9Gbps delivered:1 app_limited rcv_space:65495 rcv_ssthresh:65495 minrtt:0.103"
        " snd_wnd:65483")
    assert isinstance(info, TcpInfo)


def test_chrono_busy_time_runs_to_now() -> None:
    """tcp_get_info_chrono_stats(): the running chrono (rwnd-limited here) counts up to now."""
    info = _tcp_get_info(TCP_ESTABLISHED, values(chrono_type=2, chrono_start=100), [5, 0, 0], "", 350, HZ)
    assert (info.busy_time, info.rwnd_limited) == ((5 + 250) * 4000, 250 * 4000)
    assert " busy:1020ms rwnd_limited:1000ms(98.0%)" in tcp_info_text(info, False, False)
