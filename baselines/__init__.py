"""Reimplemented pruning baselines: LTH, SNIP, GraSP, random."""
