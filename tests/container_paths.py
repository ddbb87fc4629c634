"""
cgroup v2 paths as container runtimes, kubelet and systemd make them, with what
:func:`drgn_ss.containers.container_of` says of each.

:data:`VECTORS`' paths are all creatable as cgroup directories (under a cgroup2 mount, one
``mkdir -p`` each) and distinct, for a guest test that puts a process in each; each
container's id is distinct, but for a conmon's (the id of the container it monitors) and
a pod's pause container beside its pod. :data:`MALFORMED` are paths that claim no
container, most of which the kernel could not make.
"""

from __future__ import annotations

from drgn_ss.containers import Container

__all__ = ["MALFORMED", "VECTORS"]


def _id(word: str) -> str:
    """A container id: an 8-hex-digit word eight times."""
    assert len(word) == 8 and all(c in "0123456789abcdef" for c in word), word
    return word * 8


def _c(runtime: str, cid: str, pod: str | None = None, qos: str | None = None) -> Container:
    return Container(runtime, cid, pod, qos, None)


def _pod(uid: str, qos: str) -> Container:
    return Container(None, None, uid, qos, None)


def _unit(name: str) -> Container:
    return Container(None, None, None, None, name)


def _s(uid: str) -> str:
    """A pod UID as the systemd cgroup driver writes it into a slice's name."""
    return uid.replace("-", "_")


D1, D2, D3 = _id("5ca1ab1e"), _id("deadbeef"), _id("c0ffee00")
C1, C2, C3, C4 = _id("0ddba11a"), _id("feedface"), _id("baddcafe"), _id("facade01")
K1, K2, K3 = _id("decade02"), _id("b01dface"), _id("cafebabe")
K4, K5, K6 = _id("abad1dea"), _id("d15ea5e0"), _id("0b5e55ed")
O1, O2, O3 = _id("be5077ed"), _id("f00dbabe"), _id("acce55ed")
P1, P2, P3, P4 = _id("5eed1e55"), _id("a11ce0ff"), _id("b0bb1e5a"), _id("ca11ab1e")
PODMAN_POD = _id("c0de0c0d")
KIND1, KIND2, KIND3, KIND4 = _id("de7ec7ed"), _id("e1ec7ed0"), _id("fee1dead"), _id("10ca1ab1")
DIND1, DIND2 = _id("5a1ad000"), _id("dec0ded0")

U1 = "3f1c2a7e-9b4d-4c6a-8e2f-1a0b9c8d7e6f"
U2 = "8a6e0b1c-2d3f-4a5b-9c7d-e1f203a4b5c6"
U3 = "c0d1e2f3-a4b5-4c6d-8e7f-901a2b3c4d5e"
U4 = "1b2c3d4e-5f60-4718-a9b0-c1d2e3f4a5b6"
U5 = "6d7e8f90-a1b2-4c3d-9e4f-5a6b7c8d9e0f"
U6 = "9e8d7c6b-5a49-4837-b261-50f4e3d2c1b0"
U7 = "2a3b4c5d-6e7f-4809-9a1b-2c3d4e5f6071"
U8 = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918"
U9 = "4e5f6071-8293-4a4b-bc5d-6e7f80912a3b"
U10 = "5b4a3928-1706-4f5e-9d4c-3b2a19087f6e"
U11 = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"

_KS = "/kubepods.slice"
_BURSTABLE = f"{_KS}/kubepods-burstable.slice"
_BESTEFFORT = f"{_KS}/kubepods-besteffort.slice"
_USER = "/user.slice/user-1000.slice"
_VTE = "vte-spawn-3c8f2a1d-6b4e-4f0a-9d7c-2e1b0a9f8c7d.scope"

#: (path, what it says), every layout: docker, containerd, CRI (containerd, CRI-O) under both
#: cgroup drivers, podman, LXC, nested (kind, docker-in-docker), systemd units, the root.
VECTORS: tuple[tuple[str, Container | None], ...] = (
    # docker: systemd driver, cgroupfs driver, docker's containerd namespace
    (f"/system.slice/docker-{D1}.scope", _c("docker", D1)),
    (f"/docker/{D2}", _c("docker", D2)),
    (f"/moby/{D3}", _c("docker", D3)),
    # containerd (not CRI): systemd, nerdctl, ctr's namespaces under cgroupfs
    (f"/system.slice/containerd-{C1}.scope", _c("containerd", C1)),
    (f"/system.slice/nerdctl-{C2}.scope", _c("containerd", C2)),
    (f"/default/{C3}", _c("containerd", C3)),
    (f"/k8s.io/{C4}", _c("containerd", C4)),
    # Kubernetes, containerd's CRI, systemd driver: guaranteed, burstable, besteffort
    (f"{_KS}/kubepods-pod{_s(U1)}.slice/cri-containerd-{K1}.scope", _c("containerd", K1, U1, "guaranteed")),
    (f"{_BURSTABLE}/kubepods-burstable-pod{_s(U2)}.slice/cri-containerd-{K2}.scope",
     _c("containerd", K2, U2, "burstable")),
    (f"{_BESTEFFORT}/kubepods-besteffort-pod{_s(U3)}.slice/cri-containerd-{K3}.scope",
     _c("containerd", K3, U3, "besteffort")),
    # ... cgroupfs driver (K6: a pod's pause container)
    (f"/kubepods/pod{U4}/{K4}", _c("containerd", K4, U4, "guaranteed")),
    (f"/kubepods/burstable/pod{U5}/{K5}", _c("containerd", K5, U5, "burstable")),
    (f"/kubepods/besteffort/pod{U6}/{K6}", _c("containerd", K6, U6, "besteffort")),
    # a pod's own cgroup, no container below it: both drivers
    (f"/kubepods/burstable/pod{U5}", _pod(U5, "burstable")),
    (f"{_BESTEFFORT}/kubepods-besteffort-pod{_s(U3)}.slice", _pod(U3, "besteffort")),
    (f"{_KS}/kubepods-pod{_s(U1)}.slice", _pod(U1, "guaranteed")),
    # CRI-O: systemd driver (the container, its conmon), guaranteed, cgroupfs driver
    (f"{_BURSTABLE}/kubepods-burstable-pod{_s(U7)}.slice/crio-{O1}.scope", _c("crio", O1, U7, "burstable")),
    (f"{_BURSTABLE}/kubepods-burstable-pod{_s(U7)}.slice/crio-conmon-{O1}.scope",
     _c("crio", O1, U7, "burstable")),
    (f"{_KS}/kubepods-pod{_s(U9)}.slice/crio-{O2}.scope", _c("crio", O2, U9, "guaranteed")),
    (f"/kubepods/burstable/pod{U8}/crio-{O3}", _c("crio", O3, U8, "burstable")),
    # podman: rootful, its conmon, rootless, cgroupfs, a container of a podman pod
    (f"/machine.slice/libpod-{P1}.scope", _c("podman", P1)),
    (f"/machine.slice/libpod-conmon-{P1}.scope", _c("podman", P1)),
    (f"{_USER}/user@1000.service/user.slice/libpod-{P2}.scope", _c("podman", P2)),
    (f"/libpod_parent/libpod-{P3}", _c("podman", P3)),
    (f"/machine.slice/machine-libpod_pod_{PODMAN_POD}.slice/libpod-{P4}.scope", _c("podman", P4)),
    # LXC: the payload, a service inside it, the monitor, the old layout
    ("/lxc.payload.web01", _c("lxc", "web01")),
    ("/lxc.payload.web01/system.slice/nginx.service", _c("lxc", "web01")),
    ("/lxc.monitor.web01", _c("lxc", "web01")),
    ("/lxc/legacy_db-2.example", _c("lxc", "legacy_db-2.example")),
    # nested: kind (cgroupfs; systemd with kind's cgroupRoot /kubelet), docker-in-docker
    (f"/docker/{KIND1}/kubepods/burstable/pod{U10}/{KIND2}", _c("containerd", KIND2, U10, "burstable")),
    (f"/system.slice/docker-{KIND3}.scope/kubelet.slice/kubelet-kubepods.slice/"
     f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{_s(U11)}.slice/"
     f"cri-containerd-{KIND4}.scope", _c("containerd", KIND4, U11, "besteffort")),
    (f"/docker/{DIND1}/docker/{DIND2}", _c("docker", DIND2)),
    # systemd: services, a template's instance, the container daemon, sessions, user managers
    ("/system.slice/nginx.service", _unit("nginx.service")),
    ("/system.slice/containerd.service", _unit("containerd.service")),
    ("/system.slice/system-getty.slice/getty@tty1.service", _unit("getty@tty1.service")),
    (f"{_USER}/session-3.scope", _unit("session-3.scope")),
    (f"{_USER}/user@1000.service", _unit("user@1000.service")),
    (f"{_USER}/user@1000.service/init.scope", _unit("init.scope")),
    (f"{_USER}/user@1000.service/app.slice/foo.service", _unit("foo.service")),
    (f"{_USER}/user@1000.service/app.slice/app-org.gnome.Terminal.slice/{_VTE}", _unit(_VTE)),
    ("/init.scope", _unit("init.scope")),
    # slices alone, and the root: nothing
    (_BURSTABLE, None),
    ("/system.slice", None),
    ("/", None),
)

_ESC = "\x1b[31m"
_BAD_BYTES = b"/docker/\xff\xfe" + D1.encode()

#: (path, what it says: None or a unit): no container claimed.
MALFORMED: tuple[tuple[str, Container | None], ...] = (
    # ids: short, long, uppercase, not hex, non-ASCII digits
    (f"/docker/{D1[:63]}", None),
    (f"/docker/{D1}0", None),
    (f"/docker/{D1.upper()}", None),
    (f"/docker/{'g' * 64}", None),
    (f"/docker/{D1[:60]}\u0663\u0663\u0663\u0663", None),
    (f"/docker/{D1[:60]}\uff15\uff15\uff15\uff15", None),
    (f"/system.slice/docker-{D1[:12]}.scope", _unit(f"docker-{D1[:12]}.scope")),
    (f"/system.slice/docker-{D1}.scope{_ESC}", None),
    (f"/system.slice/docker-{D1}.scope.bak", None),
    # a bare id under a parent that does not say whose
    (f"/system.slice/{D1}", None),
    (f"/mynamespace/{D1}", None),
    (f"/{D1}", None),
    # pods: UID uppercase, 32 hex, the other driver's form, out of place, unknown QoS
    (f"/kubepods/burstable/pod{U5.upper()}/{K5}", None),
    (f"/kubepods/burstable/pod{U5.replace('-', '')}/{K5}", None),
    (f"/kubepods/burstable/pod{_s(U5)}/{K5}", None),
    (f"{_BURSTABLE}/kubepods-burstable-pod{U2}.slice", None),
    (f"{_KS}/kubepods-burstable-pod{_s(U2)}.slice", None),
    (f"/kubepods/gold/pod{U5}", None),
    (f"/burstable/pod{U5}", None),
    (f"/kubepods/burstable/pod{U5}x/{K5}", None),
    # control characters, escape sequences, non-ASCII, surrogate-escaped bytes
    (f"/system.slice/nginx.service/{_ESC}red", _unit("nginx.service")),
    (f"/system.slice/{_ESC}nginx.service", None),
    (f"/lxc.payload.{_ESC}evil", None),
    ("/lxc.payload.caf\u00e9", None),
    ("/lxc.payload.web\udcff01", None),
    ("/lxc/web\t01", None),
    (_BAD_BYTES.decode(errors="surrogateescape"), None),
    ("/system.slice/ngin\udcffx.service", None),
    ("/system.slice/nginx.service\r", None),
    (f"/docker/{D1}\n", None),
    (f"/docker/{D1}\x00", None),
    # names: too long, empty, dots only, systemd's \x escapes, a template without instance
    ("/lxc.payload." + "a" * 65, None),
    ("/lxc.payload.", None),
    ("/lxc.payload..", None),
    ("/system.slice/" + "a" * 300 + ".service", None),
    ("/system.slice/nginx.service/" + "b" * 300, _unit("nginx.service")),
    ("/system.slice/systemd-fsck@dev-disk-by\\x2duuid-0b1c.service", None),
    ("/system.slice/foo@.service", None),
    ("/system.slice/.service", None),
    # paths the kernel cannot make: relative, empty/dot components, over PATH_MAX
    ("", None),
    (f"docker/{D1}", None),
    (f"/docker/../{D1}", None),
    ("/docker/../x", None),
    (f"/docker/./{D1}", None),
    (f"/docker//{D1}", None),
    (f"/docker/{D1}/", None),
    (f"/system.slice/docker-{D1}.scope/..", None),
    ("//", None),
    ("/" + "a" * 5000, None),
    ("/system.slice/nginx.service/" + "c/" * 2500 + "d", None),
    (f"/docker/{D1}/" + "e" * 5000, None),
)
