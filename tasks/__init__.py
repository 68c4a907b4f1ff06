"""The research's tasks as NetGPT workloads: dataset builders, held-out sets and evaluations."""
