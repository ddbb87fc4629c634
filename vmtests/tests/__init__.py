"""vmtests' own host tests: the guest recipe, kernels, dumps and the bench (no VM)."""
