"""Resolve, download, extract and cache Debian kernels.

A cached kernel is a directory ``<cache>/kernels/<release>_<version>/`` holding
``vmlinux`` (the full debug ELF from the -dbg package, bootable through its PVH
entry), ``vmlinuz`` (the bzImage, for kexec), the modules the initramfs loads
(decompressed, in ``modules/``) and ``manifest.json``, written last.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vmtests import VMTestError
from vmtests.apt import AptState, PackageFile, version_key
from vmtests.config import MATRIX, KernelSeries, cache_dir
from vmtests.progress import Progress

#: Modules whose debug info (DWARF) is kept beside the vmlinux, in ``debug/``: the socket
#: families built as modules, read with their DWARF as with their BTF, and the modules
#: whose structures name a kernel-held socket's user (--kernel-users).
DEBUG_MODULES = ("vsock", "sctp", "vxlan", "geneve", "sunrpc")

#: Modules the guest loads at boot, where they are modules rather than built in.
#: Their dependencies are added from each module's .modinfo.
WANTED_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "fuse",
    "virtiofs",
    "qemu_fw_cfg",
    "ipv6",
    "af_packet",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "raw_diag",
    "unix_diag",
    "af_packet_diag",
    "netlink_diag",
    "mptcp_diag",
    "sctp",
    "sctp_diag",
    "vsock_loopback",
    "vsock_diag",
    "veth",
    "dummy",
    # Sockets the kernel holds (--kernel-users): UDP tunnels, the NFS server and client.
    "vxlan",
    "geneve",
    "fou",
    "nfsd",
    "nfsv4",
)


@dataclass
class Kernel:
    """A kernel in the cache, ready to boot."""

    series: str
    flavour: str
    release: str
    version: str
    dir: Path
    modules: list[str] = field(default_factory=list)

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "vmlinuz"

    def boot_image(self) -> Path:
        """What QEMU boots: the vmlinux with its symbols stripped, made once.

        The debug vmlinux boots through its PVH entry, faster than the bzImage under
        TCG (no emulated decompression), but QEMU spends seconds loading its symbols.
        """
        stripped = self.dir / "vmlinux.boot"
        if not stripped.exists():
            objcopy = shutil.which("objcopy")
            if not objcopy:
                return self.vmlinux
            tmp = stripped.with_suffix(".part")
            subprocess.run([objcopy, "--strip-all", str(self.vmlinux), str(tmp)], check=True)
            tmp.rename(stripped)
        return stripped

    def module_path(self, name: str) -> Path:
        return self.dir / "modules" / f"{name}.ko"

    @property
    def module_debug(self) -> list[Path]:
        """The debug files (DWARF) of :data:`DEBUG_MODULES` this kernel has as modules."""
        return sorted((self.dir / "debug").glob("*.ko"))


@dataclass(frozen=True)
class Candidate:
    """A kernel build listed in the package index."""

    release: str
    version: str
    dbg: str
    image: tuple[str, ...]


class NotFound(VMTestError):
    """A package listed in the index is not on the mirror (HTTP 404)."""


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


def series_for(name: str) -> KernelSeries:
    try:
        return MATRIX[name]
    except KeyError:
        known = ", ".join(MATRIX)
        raise VMTestError(f"unknown kernel {name!r}; known kernels: {known}") from None


def module_name(path: str) -> str:
    """``kernel/fs/fuse/virtiofs.ko.xz`` -> ``virtiofs``."""
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def modinfo(elf: bytes) -> dict[str, str]:
    """The ``.modinfo`` section of a kernel module (an ELF64 little-endian relocatable)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise VMTestError("not a 64-bit little-endian ELF module")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize
        )
        sections.append((name, offset, size))
    strtab_off = sections[shstrndx][1]
    info: dict[str, str] = {}
    for name, offset, size in sections:
        end = elf.index(b"\0", strtab_off + name)
        if elf[strtab_off + name : end] == b".modinfo":
            for entry in elf[offset : offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
    return info


def module_deps(kos: dict[str, bytes]) -> dict[str, tuple[str, list[str]]]:
    """Module name -> (path in the package, names it depends on), from each .modinfo.

    modules.dep is made by depmod at install time and is not in the package.
    Modules are decompressed lazily: only those reached by :func:`load_order`.
    """
    paths = {module_name(p): p for p in kos}

    class _Deps(dict[str, tuple[str, list[str]]]):
        def __missing__(self, name: str) -> tuple[str, list[str]]:
            path = paths[name]
            depends = modinfo(decompress_module(path, kos[path])).get("depends", "")
            value = (path, [module_name(d) for d in depends.split(",") if d])
            self[name] = value
            return value

        def __contains__(self, name: object) -> bool:
            return name in paths

    return _Deps()


def load_order(
    wanted: tuple[str, ...] | list[str], deps: dict[str, tuple[str, list[str]]]
) -> list[str]:
    """The wanted modules that exist as modules, with their dependencies, dependencies first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in deps:
            return
        seen.add(name)
        for dep in deps[name][1]:
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def decompress_module(path: str, data: bytes) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        proc = subprocess.run(["zstd", "-dc"], input=data, stdout=subprocess.PIPE, check=True)
        return proc.stdout
    return data


def resolve(series: KernelSeries, flavour: str, apt: AptState) -> list[Candidate]:
    """Every build of a series in the package index that has a -dbg package, newest first."""
    dbg_names = apt.search_names(f"^linux-image-({series.abi})-{re.escape(flavour)}-dbg$")
    release_re = series.release_re(flavour)
    releases = [n[len("linux-image-") : -len("-dbg")] for n in dbg_names]
    releases = [r for r in releases if release_re.match(r)]
    image_options = {
        r: [
            (f"linux-image-{r}-unsigned",),
            (f"linux-binary-unsigned-{r}", f"linux-modules-{r}"),
            (f"linux-binary-{r}", f"linux-modules-{r}"),
            (f"linux-image-{r}",),
        ]
        for r in releases
    }
    names = {f"linux-image-{r}-dbg" for r in releases}
    for options in image_options.values():
        for option in options:
            names.update(option)
    versions = apt.versions(sorted(names))
    candidates = []
    for r in releases:
        for version in versions.get(f"linux-image-{r}-dbg", []):
            for option in image_options[r]:
                if all(version in versions.get(n, []) for n in option):
                    candidates.append(Candidate(r, version, f"linux-image-{r}-dbg", option))
                    break
    candidates.sort(key=lambda c: (version_key(c.version), c.release), reverse=True)
    return candidates


def resolve_cached(series: KernelSeries, flavour: str, apt: AptState) -> list[Candidate]:
    """:func:`resolve`, remembered until the package index is next refreshed.

    Reading the index with apt-cache takes seconds; a boot takes about as long.
    """
    stamp = apt.index_stamp()
    memo = apt.root / "resolved.json"
    key = f"{series.name} {series.abi} {flavour}"
    try:
        data = json.loads(memo.read_text())
    except (OSError, ValueError):
        data = {}
    if data.get("stamp") != stamp:
        data = {"stamp": stamp}
    if key not in data:
        data[key] = [[c.release, c.version, c.dbg, list(c.image)] for c in resolve(series, flavour, apt)]
        tmp = memo.with_suffix(".part")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, memo)
    return [Candidate(r, v, d, tuple(i)) for r, v, d, i in data[key]]


def download(pkg: PackageFile, dest_dir: Path) -> Path:
    """Download a package with progress, verify its SHA-256, return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / pkg.filename
    part = dest.with_suffix(".part")
    digest = hashlib.sha256()
    progress = Progress(f"downloading {pkg.name} {pkg.version}", pkg.size)
    try:
        with urllib.request.urlopen(pkg.url, timeout=60) as resp, open(part, "wb") as out:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        if e.code == 404:
            raise NotFound(f"{pkg.name} {pkg.version}: {pkg.url} is not on the mirror (404)") from e
        raise VMTestError(f"downloading {pkg.name} {pkg.version} failed: {e}") from e
    except OSError as e:
        part.unlink(missing_ok=True)
        raise VMTestError(f"downloading {pkg.name} {pkg.version} failed: {e}") from e
    progress.finish()
    if digest.hexdigest() != pkg.sha256:
        part.unlink(missing_ok=True)
        raise VMTestError(f"downloading {pkg.name} {pkg.version}: SHA-256 mismatch")
    part.rename(dest)
    return dest


class _Counting:
    """A read-only file wrapper that reports how many bytes went through."""

    def __init__(self, f: IO[bytes], progress: Progress) -> None:
        self.f = f
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.progress.update(len(data))
        return data


def deb_members(deb: Path, label: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Stream the members of a .deb's data archive (through ``dpkg-deb --fsys-tarfile``)."""
    info = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Installed-Size"], stdout=subprocess.PIPE, text=True
    )
    try:
        total = int(info.stdout.strip()) * 1024
    except ValueError:
        total = 0
    progress = Progress(label, total)
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=_Counting(proc.stdout, progress), mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                yield member, tar
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0:
        raise VMTestError(f"dpkg-deb could not read {deb.name}: {err.strip()}")
    progress.finish()


def extract_vmlinux(deb: Path, dest: Path) -> None:
    """The debug vmlinux, and the debug files of :data:`DEBUG_MODULES` into ``debug/`` beside it."""
    pattern = re.compile(r"^\./usr/lib/debug/(boot/vmlinux-[^/]+|lib/modules/[^/]+/vmlinux)$")
    names = "|".join(DEBUG_MODULES)
    module = re.compile(rf"^\./usr/lib/debug/lib/modules/[^/]+/kernel/.*/({names})\.ko(\.xz|\.zst|\.gz)?$")
    part = dest.with_suffix(".part")
    found = False
    debug = dest.parent / "debug"
    debug.mkdir(exist_ok=True)
    for member, tar in deb_members(deb, f"extracting vmlinux from {deb.name}"):
        if not member.isfile():
            continue
        matched = module.match(member.name)
        if matched:
            src = tar.extractfile(member)
            assert src is not None
            ko = debug / f"{matched.group(1)}.ko"
            ko.with_suffix(".part").write_bytes(decompress_module(member.name, src.read()))
            ko.with_suffix(".part").rename(ko)
        elif pattern.match(member.name):
            src = tar.extractfile(member)
            assert src is not None
            with open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            found = True
    if not found:
        raise VMTestError(f"{deb.name} has no vmlinux under /usr/lib/debug")
    part.rename(dest)


def extract_image(debs: list[Path], release: str, dest: Path) -> list[str]:
    """Extract vmlinuz and the wanted modules; return the module load order."""
    modroot = re.compile(rf"^\./(usr/)?lib/modules/{re.escape(release)}/(.*)$")
    kos: dict[str, bytes] = {}
    found_vmlinuz = False
    for deb in debs:
        for member, tar in deb_members(deb, f"extracting {deb.name}"):
            if not member.isfile():
                continue
            m = modroot.match(member.name)
            rel = m.group(2) if m else None
            # /boot/vmlinuz-REL up to 6.x; /usr/lib/modules/REL/vmlinuz[.unsigned] in 7.x.
            if member.name == f"./boot/vmlinuz-{release}" or rel in ("vmlinuz", "vmlinuz.unsigned"):
                src = tar.extractfile(member)
                assert src is not None
                (dest / "vmlinuz").write_bytes(src.read())
                found_vmlinuz = True
                continue
            if rel is None:
                continue
            if re.search(r"\.ko(\.(xz|zst|gz))?$", rel):
                src = tar.extractfile(member)
                assert src is not None
                kos[rel] = src.read()
    if not found_vmlinuz:
        raise VMTestError(f"no vmlinuz for {release} in {', '.join(d.name for d in debs)}")
    deps = module_deps(kos)
    order = load_order(WANTED_MODULES, deps)
    moddir = dest / "modules"
    if moddir.exists():
        shutil.rmtree(moddir)
    moddir.mkdir()
    for name in order:
        path = deps[name][0]
        (moddir / f"{name}.ko").write_bytes(decompress_module(path, kos[path]))
    return order


def _manifest(d: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((d / "manifest.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def _kernel_from(d: Path, m: dict) -> Kernel:
    return Kernel(m["series"], m["flavour"], m["release"], m["version"], d, m["modules"])


def cached_kernels(series: str | None = None, flavour: str | None = None) -> list[Kernel]:
    """Complete kernels in the cache, newest first."""
    out = []
    root = kernels_dir()
    if root.is_dir():
        for d in root.iterdir():
            m = _manifest(d)
            if (not m or m.get("wanted") != list(WANTED_MODULES)
                    or m.get("debug_modules") != list(DEBUG_MODULES)):
                continue
            if series and m["series"] != series or flavour and m["flavour"] != flavour:
                continue
            out.append(_kernel_from(d, m))
    out.sort(key=lambda k: (version_key(k.version), k.release), reverse=True)
    return out


def fetch(cand: Candidate, series: str, flavour: str, apt: AptState) -> Kernel:
    """Download and extract one candidate build into the cache."""
    d = kernels_dir() / f"{cand.release}_{cand.version}"
    fresh = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    downloads = cache_dir() / "downloads"
    debs: list[Path] = []
    try:
        if not (d / "vmlinux").exists() or not (d / "debug").is_dir():
            deb = download(apt.locate(cand.dbg, cand.version), downloads)
            debs.append(deb)
            extract_vmlinux(deb, d / "vmlinux")
            deb.unlink()
        image_debs = []
        for name in cand.image:
            deb = download(apt.locate(name, cand.version), downloads)
            debs.append(deb)
            image_debs.append(deb)
        order = extract_image(image_debs, cand.release, d)
    except BaseException:
        if fresh:  # leave no half-filled directory behind (a 404, Ctrl-C)
            shutil.rmtree(d, ignore_errors=True)
        raise
    finally:
        for deb in debs:
            deb.unlink(missing_ok=True)
    manifest = {
        "series": series,
        "flavour": flavour,
        "release": cand.release,
        "version": cand.version,
        "packages": [cand.dbg, *cand.image],
        "modules": order,
        "wanted": list(WANTED_MODULES),
        "debug_modules": list(DEBUG_MODULES),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = d / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, d / "manifest.json")
    return _kernel_from(d, manifest)


class Missing:
    """Builds the index lists but the mirror does not have (404), until the index is refreshed."""

    def __init__(self, apt: AptState) -> None:
        self.path = apt.root / "missing.json"
        self.stamp = apt.index_stamp()
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self.items: set[str] = set(data.get("items", [])) if data.get("stamp") == self.stamp else set()

    def has(self, cand: Candidate) -> bool:
        return f"{cand.release} {cand.version}" in self.items

    def add(self, cand: Candidate) -> None:
        self.items.add(f"{cand.release} {cand.version}")
        self.path.write_text(json.dumps({"stamp": self.stamp, "items": sorted(self.items)}))


def get_kernel(name: str, flavour: str, refresh: bool = False) -> Kernel:
    """The newest build of a kernel series, from the cache or downloaded into it.

    Falls back to the next listed build when a listed one is not on the mirror,
    and to the newest cached build when the package index cannot be read.
    """
    series = series_for(name)
    apt = AptState()
    try:
        apt.update(force=refresh)
        candidates = resolve_cached(series, flavour, apt)
    except VMTestError as e:
        cached = cached_kernels(name, flavour)
        if cached:
            print(f"vmtests: warning: {e}; using cached {cached[0].release}", file=sys.stderr)
            return cached[0]
        raise
    if not candidates:
        raise VMTestError(
            f"no {flavour} build of kernel {name} with a -dbg package in the package index"
        )
    in_cache = {(k.release, k.version): k for k in cached_kernels(name, flavour)}
    missing = Missing(apt)
    errors = []
    for cand in candidates:
        hit = in_cache.get((cand.release, cand.version))
        if hit:
            return hit
        if missing.has(cand):
            continue
        try:
            return fetch(cand, name, flavour, apt)
        except NotFound as e:
            print(f"vmtests: {e}; trying the next build", file=sys.stderr)
            missing.add(cand)
            errors.append(str(e))
    raise VMTestError(f"no build of kernel {name} could be downloaded: {'; '.join(errors)}")
