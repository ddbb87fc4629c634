"""The facts cache on disk: one JSON file per kernel build (and one per dump for what only
that dump says), in ``~/.cache/drgn-ss/facts/``, written atomically, read with every value
checked (:data:`FACT_KINDS`) so that a damaged or forged file is never trusted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import zlib
from collections.abc import Callable
from typing import Any

from drgn_ss.kernel.features import KernelLayout

__all__ = [
    "FACTS_VERSION", "FACT_KINDS", "FactsFile", "HZ_CANDIDATES", "MAX_FACTS_FILE", "MAX_STRUCT_SIZE",
    "cache_dir", "facts_dir", "open_facts_dir", "plausible_fact", "source_hash",
]

#: Bump when the meaning of a cached value changes without its key changing. The cache
#: is also keyed by a hash of this package's source, so any code change starts afresh.
FACTS_VERSION = 2

#: The largest struct drgn-ss reads members of, with room to spare (task_struct, the
#: largest, is 6-10 KiB in the matrix): a size or offset past it is damage, not a kernel.
MAX_STRUCT_SIZE = 1 << 16
#: The largest facts file read (they hold some 30 KB).
MAX_FACTS_FILE = 1 << 22


def cache_dir() -> str:
    """Where drgn-ss caches per-build facts: $DRGN_SS_CACHE, else $XDG_CACHE_HOME/drgn-ss."""
    if os.environ.get("DRGN_SS_CACHE"):
        return os.environ["DRGN_SS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "drgn-ss")


def source_hash() -> str:
    """
    A checksum of this package's Python source files' names, sizes and modification
    times, its subpackages' too: any edit starts a new cache (stat calls: reading the
    source cost 30 ms of a TCG guest's start-up).
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crc = zlib.crc32(str(FACTS_VERSION).encode())
    subpackages = [d for d in os.listdir(package) if os.path.isfile(os.path.join(package, d, "__init__.py"))]
    for sub in sorted(["", *subpackages]):
        here = os.path.join(package, sub)
        for name in sorted(n for n in os.listdir(here) if n.endswith(".py")):
            st = os.stat(os.path.join(here, name))
            crc = zlib.crc32(f"{sub}/{name}:{st.st_size}:{st.st_mtime_ns};".encode(), crc)
    return f"{crc:08x}"


def _uint(value: Any, limit: int = 1 << 64) -> bool:
    return type(value) is int and 0 <= value < limit


def _uints(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) <= 16
            and all(_uint(v, MAX_STRUCT_SIZE) for v in value))


def _is_field(v: Any) -> bool:
    if type(v) is not list or len(v) != 5:
        return False
    at, size, signed, shift, bits = v
    return (type(at) is int and type(size) is int and type(signed) is bool and type(shift) is int
            and type(bits) is int and 0 <= at < MAX_STRUCT_SIZE and 0 < size <= 16 and 0 <= shift < 8
            and 0 <= bits <= 64)


def _is_percpu(v: Any) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and _uint(v[0]) and type(v[1]) is bool)


def _is_layout(v: Any) -> bool:
    return (isinstance(v, dict) and v.keys() == set(KernelLayout._fields)
            and all(type(x) is bool for x in v.values()))


HZ_CANDIDATES = (100, 250, 300, 1000)


FACT_KINDS: dict[str, Callable[[Any], bool]] = {
    "field": _is_field,
    "offset": lambda v: _uint(v, MAX_STRUCT_SIZE),
    "size": lambda v: _uint(v, MAX_STRUCT_SIZE + 1) and v > 0,
    "symbol": lambda v: v is None or _uint(v),
    "percpu": _is_percpu,
    "length": lambda v: _uint(v, 1 << 24),
    "chase": _uints,
    "address": lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and _uints(v[0])
    and _uint(v[1], MAX_STRUCT_SIZE),
    "layout": _is_layout,
    "hz": lambda v: type(v) is int and v in HZ_CANDIDATES,
    "enumerator": lambda v: v is None or (type(v) is int and -(1 << 63) <= v < 1 << 64),
}


def plausible_fact(key: str, value: Any) -> bool:
    """Whether ``value`` is one a fact of this key's kind (:data:`FACT_KINDS`) can have."""
    check = FACT_KINDS.get(key.partition(":")[0])
    return check is not None and check(value)


def facts_dir(create: bool) -> int | None:
    """
    The facts directory, opened, if it is a directory (not a link to one) of this user's
    that other users cannot write to; None if not (then nothing is cached).
    """
    try:
        return open_facts_dir(create)
    except OSError:
        return None


def open_facts_dir(create: bool) -> int:
    """:func:`facts_dir`, or the OSError that says why there is none."""
    path = os.path.join(cache_dir(), "facts")
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o002:
        os.close(fd)
        raise PermissionError(errno.EPERM, "not a directory of this user's that others cannot write to")
    return fd


def _read_facts_file(dir_fd: int, name: str) -> dict[str, Any]:
    """
    A facts file's JSON object, read in ``dir_fd``; {} if it is not there, is not a regular
    file of this user's (a link is not followed), is too large, or is not a JSON object.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > MAX_FACTS_FILE:
            return {}
        found = json.loads(os.read(fd, MAX_FACTS_FILE + 1))  # a regular file: read whole
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)
    return found if isinstance(found, dict) else {}


def _write_facts_file(dir_fd: int, name: str, content: dict[str, Any]) -> None:
    """
    Replace a facts file in ``dir_fd`` atomically: a new file of this user's (never an
    existing one, nor one a link points to), renamed over the old name (a link there is
    replaced, not followed).
    """
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(content, sort_keys=True))
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


class FactsFile:
    """
    One cache file: its name in the facts directory, what it must say about the kernel
    (``header``: the build ID, the release, for a dump's own file which file) for its
    facts to be used, and its facts by where they came from (``sections``).
    """

    def __init__(self, name: str, header: dict[str, str], sections: tuple[str, ...]) -> None:
        self.name = name
        self.header = header
        self.sections: dict[str, dict[str, Any]] = {section: {} for section in sections}
        self.dirty = False

    def load(self, dir_fd: int) -> None:
        """Read the file's facts, if it is there and is about this kernel (else keep none)."""
        found = _read_facts_file(dir_fd, self.name)
        if any(found.get(k) != v for k, v in self.header.items()):
            return
        for section in self.sections:
            facts = found.get(section)
            if isinstance(facts, dict):
                self.sections[section] = facts

    def save(self, dir_fd: int) -> None:
        _write_facts_file(dir_fd, self.name, {**self.header, **self.sections})
        self.dirty = False
