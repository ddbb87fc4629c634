"""Kernel hash tables and lists walked raw, bounded and loop-checked; one module per family's tables."""
