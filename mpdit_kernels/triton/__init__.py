"""The Triton implementations of the fused ops: per op file, the kernels and their launchers."""
