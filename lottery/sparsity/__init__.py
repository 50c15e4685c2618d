"""Sparse networks found other than by IMP, torch only: pruning at initialisation (SNIP, GraSP, SynFlow)."""
