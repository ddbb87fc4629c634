"""drgn-ss: socket listings from kernel memory with drgn.

The package source lives in ``helpers/`` of the repository and installs
under the import name ``drgn_ss``.
"""

__version__ = "0.1.0"
