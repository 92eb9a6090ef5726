"""Advantage estimators; importing this package registers them (explicit list: the only side-effect imports).

Uniform signature (``ADVANTAGES``): ``estimator(x: AdvantageInputs, p: Params) -> AdvantageOut``.
"""

from alignrl.advantages import baseline, gae, grpo, reinforce_pp, rloo  # noqa: F401
from alignrl.advantages.base import AdvantageInputs, AdvantageOut, contiguous_groups

__all__ = ["AdvantageInputs", "AdvantageOut", "contiguous_groups"]
