"""Training objectives; importing this package registers them (explicit list: the only side-effect imports)."""

from alignrl.objectives import sft  # noqa: F401
# ruff: noqa: I001  (one import line per module, appended in any order, so parallel additions never conflict)
from alignrl.objectives import ppo  # noqa: F401  (POLICY_LOSSES; value.py, entropy.py, tis.py are unregistered helpers)
from alignrl.objectives import gspo  # noqa: F401
from alignrl.objectives import reinforce  # noqa: F401
from alignrl.objectives import dpo  # noqa: F401  (PREFERENCE_LOSSES dpo, cdpo, robust_dpo; preference_base.py is shared)
from alignrl.objectives import ipo  # noqa: F401
from alignrl.objectives import hinge  # noqa: F401
from alignrl.objectives import f_dpo  # noqa: F401
from alignrl.objectives import h_dpo  # noqa: F401
from alignrl.objectives import tdpo  # noqa: F401  (tdpo1, tdpo2)
from alignrl.objectives import simpo  # noqa: F401
from alignrl.objectives import inpo  # noqa: F401
from alignrl.objectives import d2o  # noqa: F401
from alignrl.objectives import copg  # noqa: F401
from alignrl.objectives import dpkd  # noqa: F401
from alignrl.objectives import kd  # noqa: F401  (fkl, rkl, jsd, tvd, skew_kl, skew_rkl, akl; distill_base.py is shared)
from alignrl.objectives import taid  # noqa: F401  (TAIDSchedule is the loop-side adaptive t)
from alignrl.objectives import distillm2  # noqa: F401
from alignrl.objectives import gkd  # noqa: F401
from alignrl.objectives import online_rl  # noqa: F401  (TRAIN_LOSSES grpo, dr_grpo, dapo, gspo, rloo, reinforce_pp; anchor_term.py helper)
from alignrl.objectives import reward_model  # noqa: F401  (TRAIN_LOSSES bradley_terry; lora_nuclear_diversity helper)
from alignrl.objectives import preference_job  # noqa: F401  (TRAIN_LOSSES preference: DPO-family jobs)
