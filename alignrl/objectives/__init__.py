"""Training objectives; importing this package registers them (explicit list: the only side-effect imports)."""

from alignrl.objectives import sft  # noqa: F401
