"""Model folders: tiny Llama models built from config, GGUF import, and loading HF folders."""
