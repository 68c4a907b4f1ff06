"""Fine-tuning: JSONL datasets, the causal-LM trainer (LoRA or full), and its worker process.

Ground floor: imports only ``netgpt.*``, torch, transformers, peft and numpy, so the compute
plane, the nodes and the CLI's local mode all run the same trainer.
"""
