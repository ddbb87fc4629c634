"""ss's text line of a socket, rebuilt from its JSON object alone: what the tests use to show
that drgn-ss's JSON carries everything its text output shows (nothing lost)."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from drgn_ss.kernel.strings import safe_line
from drgn_ss.output.netlink import nl_proto_text
from drgn_ss.output.packet import ll_proto_text
from drgn_ss.output.sockopt import sockopt_text, tos_text
from drgn_ss.output.tcpinfo import tcp_info_text
from drgn_ss.output.text import TIMER_NAMES, escape_name, ms_timer, skmem_text
from drgn_ss.sockets.meminfo import SKMEM_FIELDS
from drgn_ss.sockets.raw import raw_netid
from drgn_ss.sockets.sockopt import InetTos
from drgn_ss.sockets.tcpinfo import TcpInfo


def _host(obj: dict[str, Any], side: str) -> str:
    text = obj[f"{side}_address"]
    if obj["family"] == "inet6":
        if ipaddress.ip_address(text) == ipaddress.ip_address("::") and not obj["v6only"]:
            text = "*"
        elif ":" in text:
            text = f"[{text}]"
    if side == "local" and obj["interface"] is not None:
        text += "%" + _shown(obj["interface"])
    return text


def _port(obj: dict[str, Any], side: str) -> str:
    if f"{side}_service" in obj:
        return str(obj[f"{side}_service"])
    return str(obj[f"{side}_port"]) if obj[f"{side}_port"] else "*"


def _unix_details(obj: dict[str, Any]) -> str:
    """-m and -e of a unix socket: on its line, skmem first (unix_show_sock())."""
    out = ""
    if obj.get("skmem") is not None:
        out += skmem_text([obj["skmem"][name] for name in SKMEM_FIELDS])
    if "vfs" in obj:
        if obj["shutdown"] is not None:
            out += f' {"-" if obj["shutdown"] & 1 else "<"}-{"-" if obj["shutdown"] & 2 else ">"}'
        if obj["vfs"] is not None:
            out += f' ino:{obj["vfs"]["inode"]} dev:{obj["vfs"]["dev"]}'
        if obj["peers"] is not None:
            out += " peers:" + "".join(f" {ino}" for ino in obj["peers"])
    return out


def _netns(obj: dict[str, Any]) -> str:
    if "netns_pid" not in obj:
        return ""
    if obj["netns_pid"] is None:
        return f' netns:({obj["netns"]})'
    cgroup = "" if obj["netns_cgroup"] is None else f',cgroup:{_shown(obj["netns_cgroup"])}'
    return (f' netns:({obj["netns"]},"{_shown(obj["netns_command"]).split(")")[0]}",'
            f'pid={obj["netns_pid"]}{cgroup})')


def _tid(owner: dict[str, Any]) -> str:
    return f"tid={owner['tid']}," if "tid" in owner else ""


def _process(obj: dict[str, Any]) -> str:
    out = ""
    if obj.get("owners"):
        out += " users:(" + ",".join(
            f'("{_shown(o["command"]).split(")")[0]}",'
            f'pid={o["pid"]},{_tid(o)}fd={o["fd"]})' for o in obj["owners"]) + ")"
    if obj["family"] == "unix":
        return out + _unix_details(obj) + _netns(obj)
    timer = obj.get("timer")
    if timer:
        assert TIMER_NAMES.index(timer["name"]) > 0
        out += f' timer:({timer["name"]},{ms_timer(timer["expires_ms"])},{timer["retrans"]})'
    if "inode" in obj:
        if obj["uid"]:
            out += f' uid:{obj["uid"]}'
        out += f' ino:{obj["inode"]} sk:{obj["cookie"]:x}'
        if obj["cgroup"] is not None:
            out += " cgroup:" + _shown(obj["cgroup"])
        if obj["v6only"] is not None:
            out += f' v6only:{int(obj["v6only"])}'
        if obj["shutdown"] is not None:
            out += f' {"-" if obj["shutdown"] & 1 else "<"}-{"-" if obj["shutdown"] & 2 else ">"}'
    if obj.get("tos") is not None:  # --tos, then --inet-sockopt on a line of its own
        out += tos_text(InetTos(obj["tos"], obj["tclass"], obj["class_id"]))
    if obj.get("inet_sockopt") is not None:
        out += "\n\t" + sockopt_text(tuple(obj["inet_sockopt"]))
    out += _netns(obj)
    if "skmem" in obj or ("tcp_info" in obj and obj["netid"] == "tcp"):  # -m, -i: after "\n\t"
        out += "\n\t"
        if obj.get("skmem") is not None:
            out += skmem_text([obj["skmem"][name] for name in SKMEM_FIELDS])
        if obj.get("tcp_info") is not None:
            out += tcp_info_text(TcpInfo(**obj["tcp_info"]), "timer" in obj, "local_service" not in obj)
    return out


def _vsock(number: int) -> str:
    return "*" if number == 0xFFFFFFFF else str(number)


def _shown(name: str) -> str:
    """A name from JSON as the text shows it (escape_name() of its bytes)."""
    return escape_name(name.encode().decode(errors="surrogateescape"))


def text_line(obj: dict[str, Any], netid: bool = True, state: bool = True) -> str:
    """
    The socket's line as drgn-ss's text shows it, whitespace collapsed to one space.

    :param netid: whether the text has the Netid column (ss drops it for one protocol)
    :param state: whether it has the State column (ss drops it for one state)
    """
    cells = [raw_netid(obj["protocol"]) if obj["netid"] == "raw" else obj["netid"]] if netid else []
    if state:
        cells.append(obj["state"])
    if obj.get("association"):  # an SCTP association, under its endpoint: "`- STATE", no netid
        cells = [f'`- {obj["sctp_state"]}']
    cells += [str(obj["recv_q"]), str(obj["send_q"])]
    numeric = "local_service" not in obj
    if obj["family"] == "unix":  # NAME INODE * PEER_INODE
        name = obj["local_address"]
        cells += [safe_line(name) if name is not None else "*", str(obj["local_port"]), "*",
                  str(obj["peer_port"])]
    elif obj["family"] == "packet":  # PROTOCOL:IFACE *
        local = "*" if obj["protocol"] == 3 else ll_proto_text(obj["protocol"], numeric)
        cells += [f'{local}:{_shown(obj["interface"]) if obj["interface"] is not None else "*"}', "*"]
    elif obj["family"] == "netlink":  # PROTOCOL:PORTID GROUP:PEER (numeric only: no process names)
        assert numeric, "a netlink line names processes JSON does not carry"
        port = "*" if obj["local_port"] == -1 else str(obj["local_port"])
        group = obj["dst_group"] - (1 << 32) if obj["dst_group"] >= 1 << 31 else obj["dst_group"]
        cells += [f'{nl_proto_text(obj["protocol"], True)}:{port}',
                  f'{group}:{obj["peer_port"]}' if obj["connected"] else "*"]
    elif obj["family"] == "vsock":  # CID:PORT each side, * for any
        cells += [f'{_vsock(obj["local_cid"])}:{_vsock(obj["local_port"])}',
                  f'{_vsock(obj["peer_cid"])}:{_vsock(obj["peer_port"])}']
    else:
        cells += [f'{_host(obj, "local")}:{_port(obj, "local")}',
                  f'{_host(obj, "peer")}:{_port(obj, "peer")}']
    return " ".join(cells) + _process(obj)


def schema_validator() -> Any:
    """A validator of helpers/socket.schema.json, the schema itself checked first."""
    import jsonschema  # type: ignore[import-untyped]

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers",
                           "socket.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
