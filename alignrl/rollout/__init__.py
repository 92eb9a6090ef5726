"""Generation engines behind one interface (vLLM and HF ``generate``); see ``base.py``."""
