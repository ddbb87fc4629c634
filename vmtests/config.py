"""Paths and the kernel matrix."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: The repository this package lives in.
REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The user's cache directory for drgn-ss ($XDG_CACHE_HOME/drgn-ss or ~/.cache/drgn-ss).

    ``DRGN_SS_CACHE`` overrides it.
    """
    override = os.environ.get("DRGN_SS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "drgn-ss"


DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_MIRROR = os.environ.get("DRGN_SS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY_MIRROR = os.environ.get(
    "DRGN_SS_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)


@dataclass(frozen=True)
class KernelSeries:
    """One row of the kernel matrix: a kernel series and where Debian ships it."""

    #: Short name used on the command line, e.g. ``"6.1"``.
    name: str
    #: Debian suites to look in: (mirror, suite).
    suites: tuple[tuple[str, str], ...]
    #: Regular expression matching the ABI part of the release, e.g. ``6.1.0-28``.
    #: POSIX extended syntax: it is also given to ``apt-cache search``.
    abi: str

    def release_re(self, flavour: str) -> re.Pattern[str]:
        """Match a full kernel release (``uname -r``) of this series and flavour."""
        return re.compile(rf"^({self.abi})-{re.escape(flavour)}$")


def _suites(mirror_suites: str) -> tuple[tuple[str, str], ...]:
    out = []
    for suite in mirror_suites.split():
        mirror = DEBIAN_SECURITY_MIRROR if suite.endswith("-security") else DEBIAN_MIRROR
        out.append((mirror, suite))
    return tuple(out)


#: The kernel matrix, oldest first. The newest build of each is resolved at run time.
MATRIX: dict[str, KernelSeries] = {
    s.name: s
    for s in (
        KernelSeries("5.10", _suites("bullseye bullseye-security"), r"5\.10\.0-[0-9]+"),
        KernelSeries("6.1", _suites("bookworm bookworm-security"), r"6\.1\.0-[0-9]+"),
        KernelSeries("6.12", _suites("trixie trixie-security"), r"6\.12\.[0-9]+\+deb13(\.[0-9]+)?"),
        KernelSeries("7.2", _suites("sid"), r"7\.2\.[0-9]+\+deb14(\.[0-9]+)?"),
    )
}

#: The modes of ``vmtests test`` (see vmtests/matrix.py), in the order they run.
MATRIX_MODES = ("live", "btf", "elf", "kdump", "qemu", "crash", "crash0")

DEFAULT_KERNEL = "6.1"
DEFAULT_FLAVOUR = "cloud-amd64"
FLAVOURS = ("cloud-amd64", "amd64", "rt-amd64")


def flavour_name(flavour: str) -> str:
    """Accept ``cloud``/``rt`` as short forms of ``cloud-amd64``/``rt-amd64``."""
    if flavour in ("cloud", "rt"):
        return flavour + "-amd64"
    return flavour
