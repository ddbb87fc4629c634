"""Module dependencies from .modinfo, load order, and names."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtests import VMTestError
from vmtests.kernels import load_order, modinfo, module_deps, module_name


def test_module_name() -> None:
    assert module_name("kernel/fs/fuse/virtiofs.ko.xz") == "virtiofs"
    assert module_name("kernel/drivers/virtio/virtio-pci.ko.zst") == "virtio_pci"
    assert module_name("tcp_diag.ko") == "tcp_diag"


def test_load_order_puts_dependencies_first_and_skips_builtins() -> None:
    deps = {
        "virtiofs": ("a", ["fuse", "virtio"]),
        "fuse": ("b", []),
        "virtio": ("c", ["virtio_ring"]),
        "virtio_ring": ("d", []),
        "tcp_diag": ("e", ["inet_diag"]),
        "inet_diag": ("f", []),
    }
    order = load_order(["virtiofs", "builtin_thing", "tcp_diag", "fuse"], deps)
    assert order == ["fuse", "virtio_ring", "virtio", "virtiofs", "inet_diag", "tcp_diag"]


@pytest.fixture(scope="module")
def module_object(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real ELF relocatable with a .modinfo section, as a kernel module has."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    d: Path = tmp_path_factory.mktemp("ko")
    (d / "m.c").write_text(
        'static const char a[] __attribute__((section(".modinfo"), used)) = "license=GPL";\n'
        'static const char b[] __attribute__((section(".modinfo"), used)) = "depends=fuse,virtio-ring";\n'
        "int f(void) { return 1; }\n"
    )
    subprocess.run([cc, "-c", "-o", str(d / "m.ko"), str(d / "m.c")], check=True)
    return (d / "m.ko").read_bytes()


def test_modinfo_reads_a_real_elf_object(module_object: bytes) -> None:
    info = modinfo(module_object)
    assert info["license"] == "GPL"
    assert info["depends"] == "fuse,virtio-ring"


def test_module_deps_decompresses_lazily(module_object: bytes) -> None:
    kos = {
        "kernel/fs/fuse/virtiofs.ko.xz": lzma.compress(module_object),
        "kernel/fs/fuse/fuse.ko.xz": b"not even an ELF: never read",
    }
    deps = module_deps(kos)
    assert "virtiofs" in deps and "fuse" in deps and "absent" not in deps
    assert deps["virtiofs"] == ("kernel/fs/fuse/virtiofs.ko.xz", ["fuse", "virtio_ring"])


def test_modinfo_rejects_non_elf() -> None:
    with pytest.raises(VMTestError):
        modinfo(b"MZ" + b"\0" * 100)
