"""PreferenceInputs validation, the shared helpers, and the registry contract of every preference loss."""

import inspect
import math

import pytest
import torch

import alignrl.objectives  # noqa: F401  (registers everything)
from alignrl.objectives.preference_base import PreferenceInputs, pair_metrics, require, seq_kl, sigmoid_loss
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64
# torch.testing's first call lazily imports ~0.8 s of torch internals; pay it at collection, not in a test
torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
NAMES = [
    "cdpo", "copg", "d2o", "dpkd", "dpo", "f_dpo", "h_dpo", "hinge", "inpo", "ipo", "robust_dpo", "simpo", "tdpo1",
    "tdpo2",
]


def test_all_names_registered_with_params_and_uniform_signature():
    assert set(NAMES) <= set(PREFERENCE_LOSSES.names())
    for name in NAMES:
        entry = PREFERENCE_LOSSES.entry(name)
        assert entry.params is not None
        entry.params()  # every knob has a default
        assert list(inspect.signature(entry.fn).parameters) == ["x", "p"]
        doc = entry.fn.__doc__ or ""
        assert "Args:" in doc and "Returns:" in doc and ("arXiv:" in doc or "ericmitchell" in doc), name


def test_params_are_frozen():
    p = PREFERENCE_LOSSES.entry("dpo").params()
    with pytest.raises(AttributeError):
        p.beta = 1.0  # type: ignore[misc]


def test_shape_checks():
    b3, b4 = torch.zeros(3, dtype=F64), torch.zeros(4, dtype=F64)
    with pytest.raises(ValueError, match="must all be"):
        PreferenceInputs(logp_chosen=b3, logp_rejected=b4)
    with pytest.raises(ValueError, match="together"):
        PreferenceInputs(kl_chosen=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="equal"):
        PreferenceInputs(kl_chosen=torch.zeros(3, 5), mask_chosen=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch sizes"):
        PreferenceInputs(logp_chosen=b3, kl_chosen=torch.zeros(4, 5), mask_chosen=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="logp_samples"):
        PreferenceInputs(logp_samples=torch.zeros(3, 2))


def test_require_names_missing_fields_and_upcasts():
    x = PreferenceInputs(logp_chosen=torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"'dpo' needs PreferenceInputs fields \['logp_rejected'\]"):
        require(x, "dpo", "logp_chosen", "logp_rejected")
    (lw,) = require(x, "dpo", "logp_chosen")
    assert lw.dtype == torch.float32


def test_sigmoid_loss_by_hand():
    z = torch.tensor([1.0, -1.0], dtype=F64)
    # −log σ(1) = log(1 + e⁻¹) = 0.31326168751822286; −log σ(−1) = log(1 + e) = 1.3132616875182228
    torch.testing.assert_close(sigmoid_loss(z), torch.tensor([0.31326168751822286, 1.3132616875182228], dtype=F64),
                               rtol=0, atol=1e-15)
    # with ε: −(1−ε)log σ(z) − ε log σ(−z) = −log σ(z) + ε·z  ->  0.31326… + 0.25 and 1.31326… − 0.25
    torch.testing.assert_close(sigmoid_loss(z, 0.25), torch.tensor([0.5632616875182228, 1.0632616875182228],
                                                                   dtype=F64), rtol=0, atol=1e-15)


def test_seq_kl_ignores_padding_even_if_inf():
    kl = torch.tensor([[0.5, 1.0, math.inf], [2.0, math.nan, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(seq_kl(kl, mask), torch.tensor([1.5, 2.0], dtype=F64), rtol=0, atol=0)


def test_pair_metrics_by_hand():
    rc = torch.tensor([1.0, 0.0, 2.0], dtype=F64, requires_grad=True)
    rr = torch.tensor([0.0, 0.0, 3.0], dtype=F64)
    m = pair_metrics(rc, rr, extra=rc)
    # means: chosen (1+0+2)/3 = 1, rejected 1, margin 0, accuracy: only pair 0 strictly wins -> 1/3
    expected = {"reward_chosen": 1.0, "reward_rejected": 1.0, "reward_margin": 0.0, "reward_accuracy": 1 / 3,
                "extra": 1.0}
    assert set(m) == set(expected)
    for k, v in expected.items():
        assert not m[k].requires_grad
        assert m[k].item() == pytest.approx(v, abs=1e-15)
