"""Training objectives; importing this package registers them (explicit list: the only side-effect imports)."""

from alignrl.objectives import sft  # noqa: F401
# ruff: noqa: I001  (one import line per module, appended in any order, so parallel additions never conflict)
from alignrl.objectives import ppo  # noqa: F401  (POLICY_LOSSES; value.py, entropy.py, tis.py are unregistered helpers)
from alignrl.objectives import gspo  # noqa: F401
from alignrl.objectives import reinforce  # noqa: F401
