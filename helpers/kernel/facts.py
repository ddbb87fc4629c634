"""Facts about a kernel build, worked out once per build.

:class:`KernelFacts` holds everything the fast paths need to know about a kernel build
(member offsets, struct sizes, symbol addresses, the kernel differences of
:class:`~drgn_ss.kernel.features.KernelLayout`, HZ), worked out on first use and kept in a
cache file per build ID (:mod:`drgn_ss.kernel.facts_file`), so that a later run on the same
build reads memory without loading any type information at all. They are worked out from a
:class:`~drgn_ss.kernel.type_sources.TypeSource`: DWARF through drgn, or, where the kernel's
debug info is not installed, the kernel's own BTF and kallsyms; both give the same offsets
(a kernel test checks it). Other modules ask :func:`kernel_facts` and :func:`kernel_layout`.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

from drgn import Program
from drgn_ss.kernel.facts_file import (
    FactsFile,
    cache_dir,
    facts_dir,
    open_facts_dir,
    plausible_fact,
    source_hash,
)
from drgn_ss.kernel.features import KernelLayout, detect_layout
from drgn_ss.kernel.fields import Field, field, offset
from drgn_ss.kernel.program import (
    debug_file,
    dwarf_is_the_builds,
    is_local_live,
    prog_cached,
    valid_build_id,
    vmcoreinfo,
)
from drgn_ss.kernel.type_sources import DwarfTypes, Learnt, TypeSource, btf_types

__all__ = ["KernelFacts", "SourceFor", "kernel_facts", "kernel_layout", "use_btf"]

#: Where a type is described, given this run's types and the type's name (see
#: :meth:`KernelFacts.field`).
SourceFor = Callable[[TypeSource, str], TypeSource]

# -- facts about a kernel build, from DWARF or BTF once, then from a cache file ------------

def use_btf(prog: Program, only: bool = False, announce: Callable[[str], None] | None = None) -> None:
    """
    How facts not in the cache are worked out when ``prog`` has no DWARF: from the
    kernel's BTF and kallsyms (the default), saying so once through ``announce`` (which
    also says the warnings about facts, :meth:`KernelFacts.warn`); with ``only``, from BTF
    even where DWARF could be loaded (``--btf``).
    """
    prog.cache["drgn_ss.btf_only"] = only
    if announce is not None:
        prog.cache["drgn_ss.announce"] = announce


# What each kind of fact (the part of its key before the first ":") may hold: a cached
# value that does not fit is not used, and a worked-out one that does not is damage.


def _dump_identity(prog: Program) -> str | None:
    """What tells the dump file ``prog`` reads from any other (see :func:`use_core_file`)."""
    identity = prog.cache.get("drgn_ss.core_identity")
    return identity if isinstance(identity, str) else None


class KernelFacts:
    """
    Facts about one kernel build: JSON values under string keys (``kind:...``, see
    :data:`FACT_KINDS`), each worked out the first time from DWARF (loading debug info
    then, if it was not) or from the kernel's BTF and kallsyms, and cached on disk.
    Symbol addresses are kept without the KASLR offset and relocated with this boot's
    ``KERNELOFFSET``.

    What is cached, where, and who may use it (nothing in a dump is trusted to be a path, or
    to describe any other dump):

    - ``facts/BUILDID-SOURCEHASH.json``, named by the build ID from VMCOREINFO if it is hex
      of a sane length (else nothing is cached), and holding that build ID and the release:
      its ``dwarf`` section, facts from DWARF whose file has that build ID (checked:
      :func:`dwarf_is_the_builds`); its ``live`` section, facts from the running kernel's
      own BTF, kallsyms and memory (this machine's kernel, not a dump).
    - ``facts/dump-CRC-SOURCEHASH.json``, per dump file (device, inode, size, times):
      facts from that dump's own BTF, kallsyms and memory, used for that file alone. A
      QEMU guest's are not cached.

    A run that loads DWARF (``-s``, or debug info found on a cache miss) works every fact
    it reads out from DWARF, and rewrites any cached one that differs. A run without it
    uses, in this order, ``dwarf``, ``live``, then its dump's own facts. A run given the
    build's own vmlinux (``-s``, its build ID checked against the kernel's:
    :meth:`defer_debug_info`) uses the ``dwarf`` facts alone, and loads DWARF only for one
    that is not there. Values of the wrong kind in a file are ignored (worked out again);
    so is a file that is not JSON.
    """

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        info = vmcoreinfo(prog)
        self.build_id = valid_build_id(info.get("BUILD-ID", ""))
        self.release = info.get("OSRELEASE", "")
        try:
            self.kaslr = int(info.get("KERNELOFFSET", "0"), 16)
        except ValueError:  # damaged: nothing worked out here is cached
            self.kaslr, self.build_id = 0, ""
        #: This run's facts, as used.
        self.values: dict[str, Any] = {}
        #: Whether this run reads DWARF, so that every fact comes from it (None: not known yet).
        self._dwarf_run: bool | None = None
        #: Whether saving failed (and was said): it is not tried, nor said, again.
        self._unwritable = False
        self._dwarf_checked: bool | None = None
        #: Whether this run had to load debug info (a cache miss, or -s).
        self.loaded_debug_info = False
        self._types: TypeSource | None = None
        #: Seconds this run spent working facts out (loading DWARF or BTF included).
        self.types_s = 0.0
        self._depth = 0
        self.shared: FactsFile | None = None
        self.own: FactsFile | None = None
        #: The shared cache file's path (None: nothing is cached).
        self.path: str | None = None
        if self.build_id:
            header = {"build_id": self.build_id, "release": self.release}
            suffix = f"{source_hash()}.json"
            self.shared = FactsFile(f"{self.build_id}-{suffix}", header, ("dwarf", "live"))
            self.path = os.path.join(cache_dir(), "facts", self.shared.name)
            identity = None if is_local_live(prog) else _dump_identity(prog)
            if identity is not None:
                self.own = FactsFile(f"dump-{zlib.crc32(identity.encode()):08x}-{suffix}",
                                     {**header, "file": identity}, ("dump",))
            dir_fd = facts_dir(create=False)
            if dir_fd is not None:
                try:
                    for f in self.files():
                        f.load(dir_fd)
                finally:
                    os.close(dir_fd)
        #: What a run without DWARF may use, the build's facts before the dump's own (with
        #: the build's vmlinux not loaded yet, the dwarf section's: :meth:`defer_debug_info`).
        self._usable: dict[str, Any] = {}
        for source, section in ((self.own, "dump"), (self.shared, "live"), (self.shared, "dwarf")):
            if source is not None:
                self._usable.update(source.sections[section])

    @property
    def dirty(self) -> bool:
        """Whether this run learnt something to write to the cache."""
        return any(f.dirty for f in self.files())

    def files(self) -> list[FactsFile]:
        return [f for f in (self.shared, self.own) if f is not None]

    def warn(self, message: str) -> None:
        """Say something about the facts on stderr, if the caller said how (:func:`use_btf`)."""
        announce = self.prog.cache.get("drgn_ss.announce")
        if announce is not None:
            announce(f"warning: {message}")

    def dwarf_run(self) -> bool:
        """
        Whether this run reads the kernel's DWARF (then every fact is worked out from it):
        its debug info is loaded (not merely loadable on a miss), and ``--btf`` was not asked.
        """
        if self._dwarf_run is None:
            self._dwarf_run = (not self.prog.cache.get("drgn_ss.btf_only")
                               and "drgn_ss.loader" not in self.prog.cache
                               and debug_file(self.prog) is not None)
        return self._dwarf_run

    def defer_debug_info(self) -> bool:
        """
        For a run given the vmlinux of this very build (``-s``; the caller checked that its
        build ID is this kernel's, as :func:`drgn_ss.commands.program.kernels_vmlinux` does): whether
        loading its DWARF can wait for a fact the cache does not hold, because the cache
        holds facts worked out from this build's DWARF (its ``dwarf`` section, cached only
        from a file whose build ID was checked). If so, until DWARF is loaded, this run uses
        those facts alone: not the live kernel's or a dump's own (a run with DWARF would work
        each out from DWARF, which gives the ``dwarf`` value).

        :return: False (nothing changed) if the cache has no such facts, or there is no
            debug info loader (:func:`set_debug_info_loader`) to load DWARF on a miss
        """
        dwarf = self.shared.sections["dwarf"] if self.shared is not None else {}
        if not dwarf or "drgn_ss.loader" not in self.prog.cache:
            return False
        self._usable = dict(dwarf)
        self.values.clear()
        return True

    def need_debug_info(self) -> Program:
        """Load debug info now if it is not loaded yet (for a cache miss, or a rare path)."""
        loader = self.prog.cache.get("drgn_ss.loader")
        if loader is not None:
            start = time.perf_counter()
            try:
                loader()  # if it fails, it stays: nothing is worked out without debug info
            finally:
                if not self._depth:  # else timed with the fact it is loaded for
                    self.types_s += time.perf_counter() - start
            del self.prog.cache["drgn_ss.loader"]
            self.loaded_debug_info = True
            self._dwarf_run = None
            if self.dwarf_run():
                self.values.clear()  # from here on, facts come from DWARF, not the cache
        return self.prog

    def types(self) -> TypeSource:
        """
        Where facts not in the cache are worked out: the kernel's DWARF if it can be
        loaded, else its BTF and kallsyms (see :func:`use_btf`).

        :raises LookupError: if neither can be had, saying why
        """
        if self._types is None:
            if self.prog.cache.get("drgn_ss.btf_only"):
                self._types = btf_types(self.prog)
            else:
                try:
                    self.need_debug_info()
                    self._types = DwarfTypes(self.prog)
                except LookupError as no_dwarf:
                    try:
                        self._types = btf_types(self.prog)
                    except LookupError as no_btf:
                        raise LookupError(f"{no_dwarf}, and no BTF to use instead ({no_btf})") from None
                    announce = self.prog.cache.get("drgn_ss.announce")
                    if announce is not None:
                        announce(f"{no_dwarf}: reading the kernel's BTF and kallsyms instead")
        return self._types

    @property
    def source(self) -> str | None:
        """"DWARF" or "BTF": what this run worked facts out from (None: all were cached)."""
        return self._types.name if self._types is not None else None

    def _cached(self, key: str) -> Any:
        """``key``'s cached value, for a run without DWARF; KeyError if none fits."""
        value = self._usable[key]
        if not plausible_fact(key, value):
            raise KeyError(key)
        return value

    def _section(self, origin: str) -> tuple[FactsFile, str] | None:
        """Where a fact of this origin is cached, if anywhere (see :class:`KernelFacts`)."""
        if origin == "dwarf":
            if self._dwarf_checked is None:
                self._dwarf_checked = dwarf_is_the_builds(self.prog, self.build_id, self.kaslr)
            return (self.shared, "dwarf") if self.shared is not None and self._dwarf_checked else None
        if origin == "memory":
            if is_local_live(self.prog):
                return (self.shared, "live") if self.shared is not None else None
            return (self.own, "dump") if self.own is not None else None
        return None

    def value(self, key: str, compute: Callable[[TypeSource], Any]) -> Any:
        """
        The value of ``key``: from the cache, unless this run reads DWARF, else
        ``compute(types)`` (see :meth:`types`), checked (:func:`plausible_fact`) and cached
        where its origin allows (``compute`` may say it with :class:`Learnt`).

        :raises ValueError: if the value worked out is not one a kernel has
        """
        try:
            return self.values[key]
        except KeyError:
            pass
        if not self.dwarf_run():
            try:
                value = self.values[key] = self._cached(key)
                return value
            except KeyError:
                pass
        start = time.perf_counter()
        self._depth += 1
        try:
            types = self.types()
            found = compute(types)
        finally:
            self._depth -= 1
            if not self._depth:  # a fact computed inside another is timed with it
                self.types_s += time.perf_counter() - start
        value, origin = found if isinstance(found, Learnt) else (found, types.origin)
        value = json.loads(json.dumps(value))  # as the cache will hold it: lists, not tuples
        if not plausible_fact(key, value):
            raise ValueError(f"the kernel's {types.name} gives {key} = {value!r}, which no kernel has: "
                             "is the dump damaged?")
        self.values[key] = value
        self._keep(key, value, origin)
        return value

    def _keep(self, key: str, value: Any, origin: str) -> None:
        """Cache a fact where its origin allows; one from DWARF replaces a live one that differs."""
        where = self._section(origin)
        if where is None:
            return
        f, section = where
        facts = f.sections[section]
        if facts.get(key, facts) != value:
            facts[key] = value
            f.dirty = True
        if section == "dwarf" and key in f.sections["live"] and f.sections["live"][key] != value:
            del f.sections["live"][key]

    def _inside(self, types: TypeSource, type_name: str, path: str, end: int) -> None:
        """
        Check that a member ending at byte ``end`` lies inside its struct.

        :raises ValueError: if it does not (a damaged BTF)
        """
        size = types.type(type_name).size
        if end > size:
            raise ValueError(f"the kernel's {types.name} puts {type_name}.{path} past the end of its "
                             f"{size} bytes: is the dump damaged?")

    def field(self, type_name: str, path: str, source: SourceFor | None = None) -> Field:
        """
        A member of a struct, as :func:`drgn_ss.kernel.fields.field`; ``source`` says where
        a type that this run's types may not have is described (a module's:
        :func:`drgn_ss.kernel.modules.module_source`).
        """
        def compute(types: TypeSource) -> Any:
            source_ = source(types, type_name) if source is not None else types
            found = field(source_, type_name, path)
            self._inside(source_, type_name, path, found.end)
            return Learnt(list(found), source_.origin)

        return Field(*self.value(f"field:{type_name}:{path}", compute))

    def offset(self, type_name: str, path: str, source: SourceFor | None = None) -> int:
        """A member's byte offset, as :func:`drgn_ss.kernel.fields.offset` (``source``: as :meth:`field`)."""
        def compute(types: TypeSource) -> Any:
            source_ = source(types, type_name) if source is not None else types
            found = offset(source_, type_name, path)
            self._inside(source_, type_name, path, found)
            return Learnt(found, source_.origin)

        return int(self.value(f"offset:{type_name}:{path}", compute))

    def size(self, type_name: str, source: SourceFor | None = None) -> int:
        """``sizeof(type_name)`` (``source``: as :meth:`field`)."""
        def compute(types: TypeSource) -> Any:
            source_ = source(types, type_name) if source is not None else types
            return Learnt(source_.type(type_name).size, source_.origin)

        return int(self.value(f"size:{type_name}", compute))

    def enumerator(self, type_name: str | None, name: str) -> int:
        """
        The value of an enum's constant (``enum packet_sock_flags``, ``PACKET_SOCK_RUNNING``);
        ``type_name`` None: of an anonymous enum (``INET_FLAGS_RECVERR``).

        :raises LookupError: if the enum has no such constant
        """
        def compute(types: TypeSource) -> int | None:
            if type_name is None:
                try:
                    return types.constant(name)
                except LookupError:
                    return None
            found = [e[1] for e in types.type(type_name).enumerators or () if e[0] == name]
            return int(found[0]) if found else None

        value = self.value(f"enumerator:{type_name or ''}:{name}", compute)
        if value is None:
            raise LookupError(f"no {name} in {type_name}")
        return int(value)

    def symbol(self, name: str) -> int:
        """
        The address of a kernel variable in this boot.

        :raises LookupError: if the kernel has no such symbol
        """
        def link_address(types: TypeSource) -> int | None:
            address = types.symbol(name)
            return None if address is None else address - self.kaslr

        address = self.value(f"symbol:{name}", link_address)
        if address is None:
            raise LookupError(f"no symbol {name!r} in this kernel")
        return int(address) + self.kaslr

    def percpu_symbol(self, name: str) -> int:
        """
        The address of a per-CPU variable (``DEFINE_PER_CPU``), to which each CPU's
        ``__per_cpu_offset`` is added. Where x86_64's per-CPU section is linked at 0 (before
        6.15) it is an offset into each CPU's area, the same in every boot (KASLR does not
        move that section); later kernels link it among the others, and it moves with them.

        :raises LookupError: if the kernel has no such symbol
        """
        def link_address(types: TypeSource) -> list[int | bool] | None:
            address = types.symbol(name)
            if address is None:
                return None
            zero_based = address < 1 << 32
            return [address if zero_based else address - self.kaslr, not zero_based]

        found = self.value(f"percpu:{name}", link_address)
        if found is None:
            raise LookupError(f"no symbol {name!r} in this kernel")
        address, relocated = found
        return int(address) + (self.kaslr if relocated else 0)

    def has_symbol(self, name: str) -> bool:
        try:
            self.symbol(name)
        except LookupError:
            return False
        return True

    def save(self) -> None:
        """
        Write what was learnt to the cache; where it cannot be written, say so once
        (:meth:`warn`): every run then works the facts out again.
        """
        files = [f for f in self.files() if f.dirty]
        if not files or self._unwritable:
            return
        failed: OSError | None = None
        try:
            dir_fd = open_facts_dir(create=True)
        except OSError as e:
            failed = e
        else:
            try:
                for f in files:
                    try:
                        f.save(dir_fd)
                    except OSError as e:
                        failed = failed or e
            finally:
                os.close(dir_fd)
        if failed is not None:
            self._unwritable = True
            reason = failed.strerror or str(failed)
            self.warn(f"cannot write the facts cache in {os.path.join(cache_dir(), 'facts')} ({reason}): "
                      "every run works facts out again")


def kernel_facts(prog: Program) -> KernelFacts:
    """The facts about ``prog``'s kernel build, shared by everything reading it."""
    return prog_cached(prog, "facts", KernelFacts)


def kernel_layout(prog: Program) -> KernelLayout:
    """The layout of ``prog``'s kernel, detected on first use (or read from the cache)."""
    def make(p: Program) -> KernelLayout:
        return KernelLayout(**kernel_facts(p).value("layout", lambda q: detect_layout(q)._asdict()))

    return prog_cached(prog, "layout", make)
