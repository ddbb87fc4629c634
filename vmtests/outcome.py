"""What a run of the kernel matrix found: pytest's counts per kernel and mode, as one table.

A part of the matrix run by a child ``vmtests test`` (``--jobs``) hands its part back as the
JSON of :class:`MatrixResults`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmtests.pytest_counts import parse_counts

#: makedumpfile settings of the crash modes: (dump level, compression).
CRASH_MODES = {"crash": (31, "zlib"), "crash0": (0, "lzo")}


@dataclass
class Outcome:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    error: str = ""

    def cell(self) -> str:
        if self.error and not (self.passed or self.failed):
            return "ERROR"
        return f"{self.passed}/{self.failed}/{self.skipped}" + ("!" if self.error else "")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error


def pytest_outcome(text: str, rc: int, what: str) -> Outcome:
    """The counts pytest printed (vmtests.pytest_counts' line), and whether it ended as pytest ends."""
    counts = parse_counts(text)
    if counts is None:
        return Outcome(error=f"{what}: pytest printed no counts (exit {rc})")
    out = Outcome(counts["passed"], counts["failed"] + counts["error"], counts["skipped"])
    if rc not in (0, 1):
        out.error = f"{what}: pytest exited {rc}"
    return out


@dataclass
class MatrixResults:
    """Outcomes per kernel and mode, each kernel's release, the crash dumps' sizes, errors."""

    results: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)
    dump_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: MatrixResults) -> None:
        for name, row in other.results.items():
            self.results.setdefault(name, {}).update(row)
        self.releases.update(other.releases)
        for name, sizes in other.dump_sizes.items():
            self.dump_sizes.setdefault(name, {}).update(sizes)
        self.errors.extend(e for e in other.errors if e not in self.errors)

    def save(self, path: Path) -> None:
        data = {"results": {k: {m: asdict(o) for m, o in row.items()} for k, row in self.results.items()},
                "releases": self.releases, "dump_sizes": self.dump_sizes, "errors": self.errors}
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> MatrixResults:
        data: dict[str, Any] = json.loads(path.read_text())
        results = {k: {m: Outcome(**o) for m, o in row.items()} for k, row in data["results"].items()}
        return cls(results=results,
                   releases=dict(data["releases"]), dump_sizes=dict(data["dump_sizes"]),
                   errors=list(data["errors"]))

    def print_table(self, flavour: str, kernels: list[str], modes: list[str]) -> None:
        print(f"\nkernel matrix ({flavour}), passed/failed/skipped per mode:")
        print(f"{'kernel':<7} {'release':<30}" + "".join(f" {m:>9}" for m in modes))
        for name in kernels:
            row = self.results.get(name, {})
            cells = "".join(f" {row[m].cell() if m in row else '-':>9}" for m in modes)
            print(f"{name:<7} {self.releases.get(name, '?'):<30}{cells}")
        for name, sizes in [(k, v) for k, v in self.dump_sizes.items() if v]:
            print(f"  {name} crash dump sizes: " + ", ".join(
                f"{mode} (level {CRASH_MODES[mode][0]}, {CRASH_MODES[mode][1]}) {size / 1e6:.1f} MB"
                for mode, size in sizes.items()))
