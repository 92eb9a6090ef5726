"""Reference-policy (anchor) rules on ``{name: Tensor}`` state dicts (pure set).

Every rule is registered in ``ANCHORS`` with one signature, called by the loop after optimizer step t:

    AnchorRule(anchor: MutableMapping[str, Tensor], policy: MutableMapping[str, Tensor], step: int,
               p: Params, *, init: Mapping[str, Tensor] | None = None) -> AnchorUpdate

``anchor`` is the rule's own model (frozen reference, EMA, soup, TR-DPO reference), updated in place;
``policy`` is read, and written only by a reset (elastic_reset); ``step`` counts optimizer steps from 1;
``init`` is θ_0 for rules that need it. The returned ``AnchorUpdate`` says which dicts changed, so the
loop knows what to push to workers. ``soup.build_soup`` makes a soup anchor at set-up; ``masks`` holds
per-token/per-sample mask builders (not registered). Importing this package registers the rules below
(explicit list: the only side-effect imports).
"""

from __future__ import annotations

from alignrl.anchors import elastic_reset, ema, frozen, soup, tr_dpo  # noqa: F401
from alignrl.anchors.common import AnchorUpdate, copy_state_dict_, lerp_state_dict_
from alignrl.anchors.masks import certainty, certainty_weights, reward_gated_mask
from alignrl.anchors.soup import build_soup

__all__ = [
    "AnchorUpdate", "build_soup", "certainty", "certainty_weights", "copy_state_dict_", "lerp_state_dict_",
    "reward_gated_mask",
]
