"""Kernel access: memory images, struct offsets and unpackers, facts and features, BTF, kallsyms."""
