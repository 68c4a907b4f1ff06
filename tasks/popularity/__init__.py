"""Popularity prediction for edge caching: synthetic and imported view logs, the research's prompt
dataset, baselines, the model recipe and its evaluation (see README.md)."""
