"""Simulated data: training sets and mock-up paintings with ground truth (paper section 2.1)."""
