"""ss's ``-i`` text of a :class:`~drgn_ss.sockets.tcpinfo.TcpInfo`, as misc/ss.c's tcp_show_info().
"""

from __future__ import annotations

from drgn_ss.kernel.fields import s32
from drgn_ss.kernel.strings import escape_name
from drgn_ss.sockets.record import TCP_LISTEN
from drgn_ss.sockets.tcpinfo import (
    TCPI_OPT_ECN,
    TCPI_OPT_ECN_SEEN,
    TCPI_OPT_SACK,
    TCPI_OPT_SYN_DATA,
    TCPI_OPT_TIMESTAMPS,
    TCPI_OPT_WSCALE,
    U32,
    U64,
    TcpInfo,
)

__all__ = ["sprint_bw", "tcp_info_text"]


def _g(value: float) -> str:
    """C's ``%g``."""
    return format(value, "g")


def sprint_bw(bw: float, numeric: bool) -> str:
    """ss's sprint_bw() (iproute2 6.1)."""
    if numeric:
        return format(bw, ".0f")
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if bw >= scale:
            return format(bw / scale, ".3g") + unit
    return _g(bw)


def tcp_info_text(i: TcpInfo, options: bool, numeric: bool) -> str:
    """
    What ss 6.1's tcp_show_info() prints of a tcp_info (after skmem): tcp_stats_print().

    :param options: ss's -o (or -e): the ts, sack, ecn, ecnseen, fastopen flags
    :param numeric: ss's -n: rates as plain numbers
    """
    out = []
    if options:
        for flag, name in ((TCPI_OPT_TIMESTAMPS, "ts"), (TCPI_OPT_SACK, "sack"), (TCPI_OPT_ECN, "ecn"),
                           (TCPI_OPT_ECN_SEEN, "ecnseen"), (TCPI_OPT_SYN_DATA, "fastopen")):
            if i.options & flag:
                out.append(f" {name}")
    if i.cong:
        out.append(f" {escape_name(i.cong)}")
    if i.options & TCPI_OPT_WSCALE:
        out.append(f" wscale:{i.snd_wscale},{i.rcv_wscale}")
    if i.rto and i.rto != 3000000:
        out.append(f" rto:{_g(i.rto / 1000)}")
    if i.backoff:
        out.append(f" backoff:{i.backoff}")
    if i.rtt:
        out.append(f" rtt:{_g(i.rtt / 1000)}/{_g(i.rttvar / 1000)}")
    if i.ato:
        out.append(f" ato:{_g(i.ato / 1000)}")
    for name, value in (("mss", i.snd_mss), ("pmtu", i.pmtu), ("rcvmss", i.rcv_mss), ("advmss", i.advmss),
                        ("cwnd", i.snd_cwnd)):
        if value:
            out.append(f" {name}:{value}")
    if i.snd_ssthresh < 0xFFFF and i.snd_ssthresh:
        out.append(f" ssthresh:{i.snd_ssthresh}")
    for name, value in (("bytes_sent", i.bytes_sent), ("bytes_retrans", i.bytes_retrans),
                        ("bytes_acked", i.bytes_acked), ("bytes_received", i.bytes_received),
                        ("segs_out", i.segs_out), ("segs_in", i.segs_in), ("data_segs_out", i.data_segs_out),
                        ("data_segs_in", i.data_segs_in)):
        if value:
            out.append(f" {name}:{value}")
    if i.rtt > 0 and i.snd_mss and i.snd_cwnd:
        send = float(i.snd_cwnd) * float(i.snd_mss) * 8000000.0 / float(i.rtt)
        out.append(f" send {sprint_bw(send, numeric)}bps")
    for name, value in (("lastsnd", i.last_data_sent), ("lastrcv", i.last_data_recv),
                        ("lastack", i.last_ack_recv)):
        if value:
            out.append(f" {name}:{value}")
    if i.pacing_rate and i.pacing_rate != U64:
        out.append(f" pacing_rate {sprint_bw(i.pacing_rate * 8.0, numeric)}bps")
        if i.max_pacing_rate and i.max_pacing_rate != U64:
            out.append(f"/{sprint_bw(i.max_pacing_rate * 8.0, numeric)}bps")
    if i.delivery_rate:
        out.append(f" delivery_rate {sprint_bw(i.delivery_rate * 8.0, numeric)}bps")
    if i.delivered:
        out.append(f" delivered:{i.delivered}")
    if i.delivered_ce:
        out.append(f" delivered_ce:{i.delivered_ce}")
    if i.delivery_rate_app_limited:
        out.append(" app_limited")
    if i.busy_time:
        out.append(f" busy:{i.busy_time // 1000}ms")
        if i.rwnd_limited:
            out.append(f" rwnd_limited:{i.rwnd_limited // 1000}ms"
                       f"({100.0 * i.rwnd_limited / i.busy_time:.1f}%)")
        if i.sndbuf_limited:
            out.append(f" sndbuf_limited:{i.sndbuf_limited // 1000}ms"
                       f"({100.0 * i.sndbuf_limited / i.busy_time:.1f}%)")
    if i.unacked:
        out.append(f" unacked:{i.unacked}")
    if i.retrans or i.total_retrans:
        out.append(f" retrans:{i.retrans}/{i.total_retrans}")
    if i.lost:
        out.append(f" lost:{i.lost}")
    if i.sacked and i.state != TCP_LISTEN:
        out.append(f" sacked:{i.sacked}")
    if i.dsack_dups:
        out.append(f" dsack_dups:{i.dsack_dups}")
    if i.fackets:
        out.append(f" fackets:{i.fackets}")
    if i.reordering != 3:
        out.append(f" reordering:{s32(i.reordering)}")
    if i.reord_seen:
        out.append(f" reord_seen:{s32(i.reord_seen)}")
    if i.rcv_rtt:
        out.append(f" rcv_rtt:{_g(i.rcv_rtt / 1000)}")
    if i.rcv_space:
        out.append(f" rcv_space:{s32(i.rcv_space)}")
    if i.rcv_ssthresh:
        out.append(f" rcv_ssthresh:{i.rcv_ssthresh}")
    if i.notsent_bytes:
        out.append(f" notsent:{i.notsent_bytes}")
    if i.min_rtt and i.min_rtt != U32:
        out.append(f" minrtt:{_g(i.min_rtt / 1000)}")
    if i.rcv_ooopack:
        out.append(f" rcv_ooopack:{i.rcv_ooopack}")
    if i.snd_wnd:
        out.append(f" snd_wnd:{i.snd_wnd}")
    return "".join(out)
