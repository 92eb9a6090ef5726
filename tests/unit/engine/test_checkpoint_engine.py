"""DeepSpeed's checkpoint engine as the learner uses it: ``torch.load(weights_only=True)`` with DeepSpeed's own
optimizer-state classes allowed, so ``--resume`` unpickles nothing else (a planted object is refused)."""

from __future__ import annotations

import pickle

import pytest
import torch

from alignrl.engine.deepspeed_learner import weights_only_checkpoint_engine


class Planted:
    """Stands for an attacker's object: unpickling it would run ``__reduce__``'s callable."""

    def __reduce__(self):
        return (print, ("pwned",))


def _engine():
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    return weights_only_checkpoint_engine(TorchCheckpointEngine())


def test_deepspeed_optimizer_state_loads_with_weights_only(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    state = {"optimizer_state_dict": {"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.gradients,
                                      "state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(2.0)}}}}
    torch.save(state, tmp_path / "optim.pt")
    loaded = _engine().load(str(tmp_path / "optim.pt"))
    opt = loaded["optimizer_state_dict"]
    assert opt["zero_stage"] is ZeroStageEnum.gradients and isinstance(opt["loss_scaler"], LossScaler)
    assert torch.equal(opt["state"][0]["exp_avg"], torch.ones(3))


def test_a_planted_object_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2), "evil": Planted()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _engine().load(str(tmp_path / "bad.pt"))
