"""
What a process runs in, from its cgroup v2 path: a container (docker, containerd, CRI-O,
podman, LXC), a Kubernetes pod, or else a systemd unit.

The path is the one ``/proc/PID/cgroup`` shows on its ``0::`` line, here read from kernel
memory that a damaged or forged dump fills with anything. Each layout is matched strictly:
a container id is 64 lowercase hex digits, a pod UID a lowercase UUID, a name of only the
characters its tool allows; so all that can reach the text is of ``[A-Za-z0-9_.@:-]``,
and what matches no layout is not claimed. A path the kernel cannot make (empty, ``.`` or
``..`` components, a newline or NUL, longer than :data:`MAX_PATH`) says nothing.

The innermost container (or pod) in the path wins: ``/docker/ID1/kubepods/burstable/
podUID/ID2`` (kind, k3s in docker) is the container ID2 of that pod. A process in no
container and no pod is in the innermost well-formed ``*.service`` or ``*.scope``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["MAX_PATH", "Container", "container_fields", "container_of", "container_text"]

#: The longest path parsed (PATH_MAX); a longer one says nothing.
MAX_PATH = 4096
#: The longest name a cgroup directory can have (NAME_MAX): a longer component matches nothing.
_MAX_NAME = 255

_HEX64 = r"[0-9a-f]{64}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_ = r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}"

#: A container's scope, the systemd cgroup driver's (anywhere in the path).
_SCOPE = re.compile(
    rf"(docker|cri-containerd|crio-conmon|crio|libpod-conmon|libpod|containerd|nerdctl)-({_HEX64})\.scope",
    re.ASCII)
#: A container's cgroup, the cgroupfs driver's, with its runtime's prefix.
_PREFIXED = re.compile(rf"(crio-conmon|crio|libpod-conmon|libpod)-({_HEX64})", re.ASCII)
#: A container's cgroup named by its id alone: only under a known parent (:data:`_NAMESPACES`, a pod).
_BARE = re.compile(_HEX64, re.ASCII)
_LXC = re.compile(r"lxc\.(?:payload|monitor)\.([A-Za-z0-9_.-]{1,64})", re.ASCII)
_LXC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
#: A pod's cgroup, cgroupfs driver: ``pod<UID>`` under ``kubepods[/QOS]``.
_POD_DIR = re.compile(rf"pod({_UUID})", re.ASCII)
#: A pod's slice, systemd driver: ``[ROOT-]kubepods[-QOS]-pod<UID with _>.slice``.
_POD_SLICE = re.compile(
    rf"((?:[A-Za-z0-9_]+-)*kubepods)(?:-(burstable|besteffort))?-pod({_UUID_})\.slice", re.ASCII)
#: A systemd service or scope (no ``\\`` escapes, no template without its instance).
_UNIT = re.compile(r"[A-Za-z0-9:_.-]+(?:@[A-Za-z0-9:_.-]+)?\.(?:service|scope)", re.ASCII)
#: What a field may put in the text.
_FIELD = re.compile(r"[A-Za-z0-9_.@:-]+", re.ASCII)

_RUNTIMES = {
    "docker": "docker", "cri-containerd": "containerd", "containerd": "containerd",
    "nerdctl": "containerd", "crio": "crio", "crio-conmon": "crio", "libpod": "podman",
    "libpod-conmon": "podman",
}
#: cgroupfs parents of a bare container id: docker's, and containerd's namespaces (moby: docker's).
_NAMESPACES = {"docker": "docker", "moby": "docker", "default": "containerd", "k8s.io": "containerd"}
_QOS_DIRS = ("burstable", "besteffort")


class Container(NamedTuple):
    """
    What a cgroup path says a process runs in: a container (``runtime`` and ``id``, with
    ``pod_uid`` and ``qos`` when it is a Kubernetes pod's), a pod alone (``pod_uid`` and
    ``qos``), or a systemd ``unit`` (only when neither).
    """

    #: "docker", "containerd", "crio", "podman" or "lxc".
    runtime: str | None
    #: The full container id (64 lowercase hex digits), or an LXC container's name.
    id: str | None
    #: The Kubernetes pod's UID, dashed (8-4-4-4-12) and lowercase.
    pod_uid: str | None
    #: The pod's QoS class: "guaranteed", "burstable" or "besteffort".
    qos: str | None
    #: The systemd unit ("nginx.service", "session-3.scope") of a process in no container.
    unit: str | None


def _components(path: str) -> list[str] | None:
    """The path's components, or None if the kernel could not have made it."""
    if not isinstance(path, str) or len(path) > MAX_PATH or not path.startswith("/"):
        return None
    if "\0" in path or "\n" in path:
        return None
    if path == "/":
        return []
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return parts


def _pod_at(parts: list[str], i: int) -> tuple[str, str] | None:
    """The pod (UID, QoS class) whose cgroup ``parts[i]`` is, checked against its parents."""
    if i < 0 or len(parts[i]) > _MAX_NAME:
        return None
    name = parts[i]
    parent = parts[i - 1] if i >= 1 else None
    grandparent = parts[i - 2] if i >= 2 else None
    match = _POD_DIR.fullmatch(name)
    if match:
        if parent == "kubepods":
            return match[1], "guaranteed"
        if parent in _QOS_DIRS and grandparent == "kubepods":
            return match[1], parent
        return None
    match = _POD_SLICE.fullmatch(name)
    if not match:
        return None
    base, qos, uid = match.groups()
    if qos is None:
        placed = parent == f"{base}.slice"
    else:
        placed = parent == f"{base}-{qos}.slice" and grandparent == f"{base}.slice"
    return (uid.replace("_", "-"), qos or "guaranteed") if placed else None


def _in_pod(runtime: str, cid: str, parts: list[str], i: int) -> Container:
    """The container ``cid`` whose cgroup is ``parts[i]``, with the pod it sits directly in."""
    pod = _pod_at(parts, i - 1) if i >= 1 else None
    if pod is None:
        return Container(runtime, cid, None, None, None)
    return Container(runtime, cid, pod[0], pod[1], None)


def _lxc(name: str) -> Container | None:
    """The LXC container ``name``."""
    return None if name in (".", "..") else Container("lxc", name, None, None, None)


def _container_at(parts: list[str], i: int) -> Container | None:
    """The container whose cgroup ``parts[i]`` is, if it is one."""
    name = parts[i]
    if len(name) > _MAX_NAME:
        return None
    match = _SCOPE.fullmatch(name) or _PREFIXED.fullmatch(name)
    if match:
        return _in_pod(_RUNTIMES[match[1]], match[2], parts, i)
    parent = parts[i - 1] if i >= 1 else None
    if _BARE.fullmatch(name) and parent is not None:
        if parent in _NAMESPACES:
            return Container(_NAMESPACES[parent], name, None, None, None)
        return _in_pod("containerd", name, parts, i) if _pod_at(parts, i - 1) else None
    match = _LXC.fullmatch(name)
    if match:
        return _lxc(match[1])
    if parent == "lxc" and _LXC_NAME.fullmatch(name):
        return _lxc(name)
    return None


def container_of(path: str) -> Container | None:
    """
    What the cgroup v2 ``path`` (``/proc/PID/cgroup``'s ``0::PATH``) says the process runs
    in: the innermost container or pod, else the innermost systemd service or scope.

    :param path: any string (bytes decoded with ``errors="surrogateescape"``); never raises
    :return: None when nothing in it is well formed
    """
    parts = _components(path)
    if parts is None:
        return None
    for i in range(len(parts) - 1, -1, -1):
        found = _container_at(parts, i)
        if found is not None:
            return found
        pod = _pod_at(parts, i)
        if pod is not None:
            return Container(None, None, pod[0], pod[1], None)
    for name in reversed(parts):
        if len(name) <= _MAX_NAME and _UNIT.fullmatch(name):
            return Container(None, None, None, None, name)
    return None


def _safe(*values: str | None) -> bool:
    """Whether every value given is None or of the characters the text allows."""
    return all(v is None or _FIELD.fullmatch(v) for v in values)


def container_text(c: Container) -> str:
    """
    The text cell: ``container:(RUNTIME,ID12)``, ``container:(RUNTIME,ID12,pod=POD_UID)``
    (ID12: the id's first 12 characters; an LXC container's whole name), ``pod:(POD_UID,
    qos=QOS)`` for a pod alone, ``unit:NAME``; "" for nothing, and for a :class:`Container`
    (not one :func:`container_of` made) with a character outside ``[A-Za-z0-9_.@:-]``.
    """
    if not _safe(c.runtime, c.id, c.pod_uid, c.qos, c.unit):
        return ""
    if c.runtime is not None and c.id is not None:
        shown = c.id if c.runtime == "lxc" else c.id[:12]
        pod = f",pod={c.pod_uid}" if c.pod_uid is not None else ""
        return f"container:({c.runtime},{shown}{pod})"
    if c.pod_uid is not None:
        qos = f",qos={c.qos}" if c.qos is not None else ""
        return f"pod:({c.pod_uid}{qos})"
    if c.unit is not None:
        return f"unit:{c.unit}"
    return ""


def container_fields(c: Container) -> dict[str, str | None]:
    """The JSON object: ``runtime``, ``id`` (in full), ``pod_uid``, ``qos``, ``unit``."""
    return {"runtime": c.runtime, "id": c.id, "pod_uid": c.pod_uid, "qos": c.qos, "unit": c.unit}
