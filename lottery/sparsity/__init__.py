"""Sparse networks found other than by IMP, torch only: pruning at initialisation (SNIP, GraSP, SynFlow), sparse
training (masks that change while a run trains: GMP, SET, RigL; and masks learned through a tensor of their own:
edge-popup's strong tickets, SR-STE's N:M), early-bird detection, Wanda; the sparsity distributions (uniform, ER,
ERK) and the update schedule they share. Each method is a record beside its code."""
