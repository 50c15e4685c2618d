"""Sparse networks found other than by IMP, torch only: pruning at initialisation (SNIP, GraSP, SynFlow), sparse
training (masks that change while a run trains: GMP, SET, RigL), early-bird detection, Wanda; the sparsity
distributions (uniform, ER, ERK) and the update schedule they share. Each method is a record beside its code."""
