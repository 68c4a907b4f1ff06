"""Benchmarks: one command each, ratios against a baseline measured in the same run, JSON reports."""
