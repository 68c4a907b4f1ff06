"""Concise prompt -> comprehensive prompt -> answer: datasets, starter-model recipes, evaluation."""
