"""Checkpoints as users have them (GGUF files, Hugging Face folders) turned into the store's format."""
