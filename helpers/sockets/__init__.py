"""Sockets: the one record every family makes, and each family's decoding."""
