"""ss -i: a TCP socket's ``struct tcp_info``, as tcp_get_info() fills it, read from kernel memory.

inet_diag answers ``ss -i`` with tcp_get_info()'s ``struct tcp_info`` (net/ipv4/tcp.c) and the
congestion control's name; :func:`socket_tcp_info` computes the same fields from the socket's
``struct tcp_sock`` read raw (times from the kernel's own jiffies, so a dump's are those of
its crash), and :func:`tcp_info_text` prints them as iproute2 6.1's tcp_show_info() and
tcp_stats_print() do. Congestion controls' own reports (BBR, DCTCP, Vegas), MD5 keys and
ULP (kTLS) details are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.clock import jiffies, kernel_hz
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.fields import Field
from drgn_ss.kernel.strings import c_string
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import TCP_LISTEN, Socket

__all__ = [
    "TCPI_OPT_ECN", "TCPI_OPT_ECN_SEEN", "TCPI_OPT_SACK", "TCPI_OPT_SYN_DATA", "TCPI_OPT_TIMESTAMPS",
    "TCPI_OPT_WSCALE", "TCP_CHRONO_MAX", "TCP_ECN_OK", "TCP_ECN_SEEN", "TcpInfo", "U32", "U64",
    "socket_tcp_info",
]

# include/uapi/linux/tcp.h
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE, TCPI_OPT_ECN, TCPI_OPT_ECN_SEEN, TCPI_OPT_SYN_DATA = (
    1, 2, 4, 8, 16, 32)
# include/net/tcp.h (tp->ecn_flags)
TCP_ECN_OK, TCP_ECN_SEEN = 1, 8
# enum tcp_chrono: BUSY, RWND_LIMITED, SNDBUF_LIMITED are chrono_stat[0..2]
TCP_CHRONO_MAX = 4
U32, U64 = (1 << 32) - 1, (1 << 64) - 1


class TcpInfo(NamedTuple):
    """The ``struct tcp_info`` fields ss prints (``tcpi_`` left out), and the congestion control."""

    state: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int  # us
    backoff: int
    rtt: int  # us
    rttvar: int  # us
    ato: int  # us
    snd_mss: int
    rcv_mss: int
    advmss: int
    pmtu: int
    snd_cwnd: int
    snd_ssthresh: int
    rcv_ssthresh: int
    rcv_space: int
    rcv_rtt: int  # us
    last_data_sent: int  # ms
    last_data_recv: int  # ms
    last_ack_recv: int  # ms
    unacked: int
    sacked: int
    lost: int
    retrans: int
    total_retrans: int
    fackets: int
    reordering: int
    pacing_rate: int  # bytes per second; 2**64 - 1: unlimited
    max_pacing_rate: int
    bytes_acked: int
    bytes_received: int
    bytes_sent: int
    bytes_retrans: int
    segs_out: int
    segs_in: int
    data_segs_out: int
    data_segs_in: int
    notsent_bytes: int
    min_rtt: int  # us; 2**32 - 1: none yet
    delivery_rate: int  # bytes per second
    delivery_rate_app_limited: int
    busy_time: int  # us
    rwnd_limited: int  # us
    sndbuf_limited: int  # us
    delivered: int
    delivered_ce: int
    dsack_dups: int
    reord_seen: int
    rcv_ooopack: int
    snd_wnd: int
    #: The congestion control's name (INET_DIAG_CONG), "" if none: as the kernel has it,
    #: decoded with errors="surrogateescape" (the text escapes it, as command names).
    cong: str


_SOCK = ("sk_pacing_rate", "sk_max_pacing_rate", "sk_ack_backlog", "sk_max_ack_backlog")
_ICSK = ("icsk_backoff", "icsk_rto", "icsk_ack.ato", "icsk_ack.rcv_mss", "icsk_ack.lrcvtime",
         "icsk_pmtu_cookie", "icsk_ca_ops")
_TP = ("reordering", "snd_cwnd", "rx_opt.tstamp_ok", "rx_opt.sack_ok", "rx_opt.wscale_ok",
       "rx_opt.snd_wscale", "rx_opt.rcv_wscale", "ecn_flags", "syn_data_acked", "mss_cache",
       "packets_out", "sacked_out", "lost_out", "retrans_out", "lsndtime", "rcv_tstamp",
       "rcv_ssthresh", "srtt_us", "mdev_us", "snd_ssthresh", "advmss", "rcv_rtt_est.rtt_us",
       "rcvq_space.space", "total_retrans", "bytes_acked", "bytes_received", "write_seq", "snd_nxt",
       "chrono_start", "chrono_type", "segs_out", "segs_in", "data_segs_in", "data_segs_out",
       "rate_app_limited", "rate_delivered", "rate_interval_us", "delivered", "delivered_ce",
       "bytes_sent", "bytes_retrans", "dsack_dups", "reord_seen", "rcv_ooopack", "snd_wnd")


class _Layout:
    """Where each value tcp_get_info() reads lives in ``struct tcp_sock``."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        T = "struct tcp_sock"
        self.fields: dict[str, Field] = {}
        for path in _SOCK:
            self.fields[path] = facts.field("struct sock", path)
        for path in _ICSK:
            self.fields[path] = facts.field("struct inet_connection_sock", path)
        for path in _TP:
            self.fields[path] = facts.field(T, path)
        # tcp_min_rtt(): rtt_min.s[0].v (an array's first element: by offsets)
        self.fields["rtt_min"] = Field(facts.offset(T, "rtt_min") + facts.offset("struct minmax", "s")
                                       + facts.offset("struct minmax_sample", "v"), 4)
        #: Where ``icsk_ack.ato`` is an 8-bit field (6.x), tcp_get_info() reports it capped at
        #: tcp_delack_max(): min(icsk_delack_max, max(icsk_rto_min, 2) - 1).
        self.ato_capped = bool(self.fields["icsk_ack.ato"].bits)
        if self.ato_capped:
            for path in ("icsk_delack_max", "icsk_rto_min"):
                self.fields[path] = facts.field("struct inet_connection_sock", path)
        self.chrono_stat = facts.offset(T, "chrono_stat")
        self.span = max(max(f.end for f in self.fields.values()), self.chrono_stat + 4 * (TCP_CHRONO_MAX - 1))
        self.ca_name = facts.offset("struct tcp_congestion_ops", "name")


def socket_tcp_info(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None
                 ) -> dict[int, TcpInfo]:
    """
    tcp_get_info() for each full TCP socket (listeners get the few fields it fills for
    them), by the socket's address. A socket freed since the walk is counted and left out.
    """
    L = _Layout(prog)
    mem = kernel_memory(prog)
    hz = kernel_hz(prog)
    now = jiffies(prog) & U32  # tcp_jiffies32
    names: dict[int, str] = {}
    out = {}
    for s in socks:
        if s.proto != "tcp" or s.kind != "full":
            continue
        try:
            buf = mem.read(s.address, L.span)
            values = {name: f.get(buf) for name, f in L.fields.items()}
            ops = values["icsk_ca_ops"]
            if ops and ops not in names:
                names[ops] = c_string(mem.read(ops + L.ca_name, 16), 0, 16, "surrogateescape")
            chrono = [int.from_bytes(buf[L.chrono_stat + 4 * i : L.chrono_stat + 4 * i + 4], "little")
                      for i in range(TCP_CHRONO_MAX - 1)]
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        if L.ato_capped:
            values["icsk_ack.ato"] = min(values["icsk_ack.ato"], values["icsk_delack_max"],
                                         max(values["icsk_rto_min"], 2) - 1)
        out[s.address] = _tcp_get_info(s.state, values, chrono, names.get(ops, ""), now, hz)
    return out


#: tcp_get_info()'s plain copies: each TcpInfo field and the member it is copied from.
_COPIED = (
    ("backoff", "icsk_backoff"), ("snd_mss", "mss_cache"), ("rcv_mss", "icsk_ack.rcv_mss"),
    ("unacked", "packets_out"), ("sacked", "sacked_out"), ("lost", "lost_out"), ("retrans", "retrans_out"),
    ("pmtu", "icsk_pmtu_cookie"), ("rcv_ssthresh", "rcv_ssthresh"), ("snd_ssthresh", "snd_ssthresh"),
    ("advmss", "advmss"), ("rcv_space", "rcvq_space.space"), ("total_retrans", "total_retrans"),
    ("bytes_acked", "bytes_acked"), ("bytes_received", "bytes_received"), ("segs_out", "segs_out"),
    ("segs_in", "segs_in"), ("data_segs_in", "data_segs_in"), ("min_rtt", "rtt_min"),
    ("data_segs_out", "data_segs_out"), ("delivered", "delivered"), ("delivered_ce", "delivered_ce"),
    ("bytes_sent", "bytes_sent"), ("bytes_retrans", "bytes_retrans"), ("dsack_dups", "dsack_dups"),
    ("reord_seen", "reord_seen"), ("rcv_ooopack", "rcv_ooopack"), ("snd_wnd", "snd_wnd"),
)


def _tcp_options(v: dict[str, int], info: dict[str, Any]) -> None:
    """tcp_get_info()'s tcpi_options, and the window scales where TCPI_OPT_WSCALE is set."""
    options = 0
    if v["rx_opt.tstamp_ok"]:
        options |= TCPI_OPT_TIMESTAMPS
    if v["rx_opt.sack_ok"]:
        options |= TCPI_OPT_SACK
    if v["rx_opt.wscale_ok"]:
        options |= TCPI_OPT_WSCALE
        info["snd_wscale"] = v["rx_opt.snd_wscale"]
        info["rcv_wscale"] = v["rx_opt.rcv_wscale"]
    if v["ecn_flags"] & TCP_ECN_OK:
        options |= TCPI_OPT_ECN
    if v["ecn_flags"] & TCP_ECN_SEEN:
        options |= TCPI_OPT_ECN_SEEN
    if v["syn_data_acked"]:
        options |= TCPI_OPT_SYN_DATA
    info["options"] = options


def _chrono_stats(v: dict[str, int], chrono_stat: list[int], now: int, usecs_per_jiffy: int,
                  info: dict[str, Any]) -> None:
    """tcp_get_info_chrono_stats(): busy, rwnd- and sndbuf-limited time, the running one counted up to now."""
    stats = []
    for i in range(1, TCP_CHRONO_MAX):
        value = chrono_stat[i - 1]
        if i == v["chrono_type"]:
            value += (now - v["chrono_start"]) & U32
        stats.append(value * usecs_per_jiffy)
    info["busy_time"] = sum(stats)
    info["rwnd_limited"], info["sndbuf_limited"] = stats[1], stats[2]


def _tcp_get_info(state: int, v: dict[str, int], chrono_stat: list[int], cong: str, now: int,
                  hz: int) -> TcpInfo:
    """net/ipv4/tcp.c tcp_get_info(), on the values it reads."""
    info: dict[str, Any] = dict.fromkeys(TcpInfo._fields, 0)
    info["state"] = state
    info["cong"] = cong
    info["pacing_rate"] = U64 if v["sk_pacing_rate"] == U64 else v["sk_pacing_rate"]
    info["max_pacing_rate"] = U64 if v["sk_max_pacing_rate"] == U64 else v["sk_max_pacing_rate"]
    info["reordering"] = v["reordering"]
    info["snd_cwnd"] = v["snd_cwnd"]
    if state == TCP_LISTEN:  # children ready for accept(), and the backlog
        info["unacked"] = v["sk_ack_backlog"]
        info["sacked"] = v["sk_max_ack_backlog"]
        return TcpInfo(**info)
    usecs_per_jiffy = 1_000_000 // hz

    def msecs(delta: int) -> int:  # jiffies_to_msecs() of a u32 difference
        return (delta & U32) * 1000 // hz

    for name, member in _COPIED:
        info[name] = v[member]
    _tcp_options(v, info)
    info["rto"] = (v["icsk_rto"] * usecs_per_jiffy) & U32
    info["ato"] = (v["icsk_ack.ato"] * usecs_per_jiffy) & U32
    info["last_data_sent"] = msecs(now - v["lsndtime"])
    info["last_data_recv"] = msecs(now - v["icsk_ack.lrcvtime"])
    info["last_ack_recv"] = msecs(now - v["rcv_tstamp"])
    info["rtt"] = v["srtt_us"] >> 3
    info["rttvar"] = v["mdev_us"] >> 2
    info["rcv_rtt"] = v["rcv_rtt_est.rtt_us"] >> 3
    notsent = (v["write_seq"] - v["snd_nxt"]) & U32
    info["notsent_bytes"] = 0 if notsent >> 31 else notsent  # max_t(int, 0, ...)
    _chrono_stats(v, chrono_stat, now, usecs_per_jiffy, info)
    info["delivery_rate_app_limited"] = 1 if v["rate_app_limited"] else 0
    if v["rate_delivered"] and v["rate_interval_us"]:  # tcp_compute_delivery_rate()
        info["delivery_rate"] = v["rate_delivered"] * v["mss_cache"] * 1_000_000 // v["rate_interval_us"]
    return TcpInfo(**info)
