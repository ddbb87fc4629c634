"""The commands: drgn-ss, drgn-nethogs, the drgn plugin, and what they share."""
