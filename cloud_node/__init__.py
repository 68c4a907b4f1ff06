"""Cloud node: LLaMA (+ LoRA) serving on torch."""
