"""A private apt state: resolve and locate Debian packages without touching /etc/apt.

apt-get and apt-cache are pointed at a sources list, lists directory and cache
of our own under the cache directory. Nothing is ever installed: packages are
only located (``--print-uris``) and downloaded by :mod:`vmtests.kernels`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmtests import VMTestError
from vmtests.config import DEBIAN_KEYRING, MATRIX, cache_dir

#: Refresh the package index when it is older than this.
INDEX_MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class PackageFile:
    """A package version and where to download it from."""

    name: str
    version: str
    url: str
    filename: str
    size: int
    sha256: str


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if not c:
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    # The upstream_version/debian_revision comparison of deb-version(7).
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e)
    if "-" in v:
        upstream, revision = v.rsplit("-", 1)
    else:
        upstream, revision = v, ""
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Compare two Debian package versions as dpkg does: <0, 0 or >0."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


version_key = functools.cmp_to_key(compare_versions)


def parse_records(text: str) -> list[dict[str, str]]:
    """Parse deb822 stanzas (``apt-cache show`` output) into dicts of their single-line fields."""
    records = []
    for stanza in re.split(r"\n\s*\n", text):
        rec: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line or line[0].isspace() or ":" not in line:
                continue
            key, value = line.split(":", 1)
            rec[key] = value.strip()
        if rec:
            records.append(rec)
    return records


_URI_RE = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) (?:SHA256:)?(?P<hash>\S+)$")


def parse_print_uris(text: str) -> list[tuple[str, str, int, str]]:
    """Parse ``apt-get download --print-uris`` lines into (url, filename, size, sha256)."""
    out = []
    for line in text.splitlines():
        m = _URI_RE.match(line.strip())
        if m:
            out.append((m["url"], m["file"], int(m["size"]), m["hash"]))
    return out


class AptState:
    """apt-get and apt-cache with their state kept under ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "apt"
        self.sources = self.root / "sources.list"
        self.lists = self.root / "lists"
        self.cache = self.root / "cache"
        self.empty = self.root / "empty.d"

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": self.sources,
            "Dir::Etc::SourceParts": self.empty,
            "Dir::Etc::Preferences": self.empty / "preferences",
            "Dir::Etc::PreferencesParts": self.empty,
            "Dir::State::Lists": self.lists,
            "Dir::State::status": self.root / "status",
            "Dir::Cache": self.cache,
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "Debug::NoLocking": "true",
        }
        out = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        return out

    def sources_text(self) -> str:
        lines = []
        seen = set()
        for series in MATRIX.values():
            for mirror, suite in series.suites:
                if (mirror, suite) in seen:
                    continue
                seen.add((mirror, suite))
                lines.append(f"deb [arch=amd64 signed-by={DEBIAN_KEYRING}] {mirror} {suite} main")
        return "\n".join(lines) + "\n"

    def _prepare(self) -> bool:
        """Create the state directories; return True if the sources list changed."""
        for d in (self.lists / "partial", self.cache / "archives" / "partial", self.empty):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        text = self.sources_text()
        if self.sources.exists() and self.sources.read_text() == text:
            return False
        self.sources.write_text(text)
        return True

    def index_age(self) -> float | None:
        stamp = self.index_stamp()
        return None if stamp is None else time.time() - stamp

    def index_stamp(self) -> float | None:
        """When the index was last refreshed (changes whenever it is)."""
        try:
            return (self.root / "updated").stat().st_mtime
        except OSError:
            return None

    def update(self, force: bool = False) -> None:
        """Refresh the package index if it is missing, stale or its sources changed.

        When the refresh fails but an older index exists, warn and use it.
        """
        changed = self._prepare()
        age = self.index_age()
        if not force and not changed and age is not None and age < INDEX_MAX_AGE:
            return
        print("vmtests: updating the Debian package index (private apt state)", file=sys.stderr)
        proc = subprocess.run(
            ["apt-get", *self.options(), "-q", "update"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        failed = proc.returncode != 0 or re.search(r"^(E:|Err:)", proc.stdout, re.M)
        if failed:
            if age is not None:
                print(
                    "vmtests: warning: could not refresh the package index; using the one from "
                    f"{age / 3600:.1f} h ago",
                    file=sys.stderr,
                )
                return
            tail = "\n".join(proc.stdout.splitlines()[-5:])
            raise VMTestError(f"apt-get update failed (private state in {self.root}):\n{tail}")
        (self.root / "updated").touch()

    def run(self, args: Sequence[str], check: bool = True) -> str:
        proc = subprocess.run(
            ["apt-cache" if args[0] in ("search", "show", "madison", "policy") else "apt-get",
             *self.options(), *args],
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and proc.returncode != 0:
            raise VMTestError(f"apt {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def search_names(self, regex: str) -> list[str]:
        """Package names matching a regular expression (apt-cache search --names-only)."""
        out = self.run(["search", "--names-only", regex])
        return sorted({line.split(" - ", 1)[0].strip() for line in out.splitlines() if line})

    def versions(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Every version of each named package in the index, newest first."""
        names = list(names)
        if not names:
            return {}
        out = self.run(["show", *names], check=False)
        result: dict[str, set[str]] = {}
        for rec in parse_records(out):
            if "Package" in rec and "Version" in rec:
                result.setdefault(rec["Package"], set()).add(rec["Version"])
        return {k: sorted(v, key=version_key, reverse=True) for k, v in result.items()}

    def locate(self, name: str, version: str) -> PackageFile:
        """Where to download one package version from."""
        out = self.run(["download", "--print-uris", f"{name}={version}"])
        uris = parse_print_uris(out)
        if not uris:
            raise VMTestError(f"apt could not locate {name}={version}")
        url, filename, size, sha256 = uris[0]
        return PackageFile(name, version, url, filename, size, sha256)
