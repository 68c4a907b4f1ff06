"""The edge learning from the cloud: distillation datasets and rounds (README "The edge learns from the cloud")."""
