"""Boot real Debian kernels under QEMU and run drgn-ss inside and against them.

Modules, one concern each (after drgn's own vmtest/ package):

- :mod:`vmtests.config`: where things are cached, the kernel matrix.
- :mod:`vmtests.apt`: a private apt state to resolve and download packages.
- :mod:`vmtests.kernels`: resolve, download, extract and cache kernels.
- :mod:`vmtests.initramfs`: the busybox initramfs and its ``init``.
- :mod:`vmtests.vm`: QEMU, virtiofsd, the serial channels, QMP and dumps.
- :mod:`vmtests.kdump`: reassemble QEMU's flattened kdump output.
- :mod:`vmtests.matrix`: the kernel x mode test matrix.
- :mod:`vmtests.bench`: the benchmark; :mod:`vmtests.benchpage`: docs/benchmarks.md from its results.
- :mod:`vmtests.__main__`: the command line.
"""


class VMTestError(Exception):
    """An error with a message meant for the user: printed on one line, no traceback."""
