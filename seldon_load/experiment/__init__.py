"""Tuning experiments: sweeps over run settings and comparisons of their results."""
