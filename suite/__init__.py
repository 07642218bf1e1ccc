"""progressive-pruning: one trainer for progressive magnitude pruning and its baselines."""
