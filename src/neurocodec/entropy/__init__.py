"""Entropy coding: CDF tables, the rANS coder (C++ core, torch reference, GPU kernels)."""
