"""Cairn's benchmarks: `make bench` (python -m bench). Figures are ratios measured in one run."""
