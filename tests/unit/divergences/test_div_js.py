"""js and generalized_jsd, including equivalence with TRL's GKDTrainer.generalized_jsd_loss."""

import ast
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from alignrl.divergences.js import GeneralizedJSDParams, JSParams, generalized_jsd, js
from alignrl.divergences.kl import ForwardKLParams, ReverseKLParams, forward_kl, reverse_kl


def brute_jsd(p, q, beta):
    """β·KL(q‖M) + (1−β)·KL(p‖M), M = β·q + (1−β)·p, by a Python loop over the vocabulary."""
    m = [beta * qi + (1 - beta) * pi for pi, qi in zip(p, q)]
    return sum(beta * qi * math.log(qi / mi) + (1 - beta) * pi * math.log(pi / mi) for pi, qi, mi in zip(p, q, m))


def test_hand_worked_value():
    # p = (½, ½), q = (¼, ¾): M = (3/8, 5/8)
    # JS = ½·[½·log(4/3) + ½·log(4/5)] + ½·[¼·log(2/3) + ¾·log(6/5)]
    #    = ½·[0.1438410 − 0.1115718] + ½·[−0.1013663 + 0.1367412] = 0.0161346 + 0.0176874 = 0.0338221
    zp = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    zq = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    expected = 0.5 * (0.5 * math.log(4 / 3) + 0.5 * math.log(4 / 5)) + 0.5 * (0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5))
    assert js.full(zp, zq, JSParams()).item() == pytest.approx(expected, abs=1e-15)
    assert expected == pytest.approx(0.0338221, abs=1e-7)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_matches_brute_force_loops(beta):
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(2, 3, 7, dtype=torch.float64), 2 * torch.randn(2, 3, 7, dtype=torch.float64)
    out = generalized_jsd.full(zp, zq, GeneralizedJSDParams(beta=beta))
    for b in range(2):
        for t in range(3):
            p, q = torch.softmax(zp[b, t], -1).tolist(), torch.softmax(zq[b, t], -1).tolist()
            assert out[b, t].item() == pytest.approx(brute_jsd(p, q, beta), abs=1e-14)


def test_js_is_jsd_half_symmetric_and_bounded():
    torch.manual_seed(1)
    zp, zq = 4 * torch.randn(5, 9, dtype=torch.float64), 4 * torch.randn(5, 9, dtype=torch.float64)
    a = js.full(zp, zq, JSParams())
    torch.testing.assert_close(a, generalized_jsd.full(zp, zq, GeneralizedJSDParams(beta=0.5)), rtol=0, atol=0)
    torch.testing.assert_close(a, js.full(zq, zp, JSParams()), rtol=0, atol=1e-15)
    assert (a <= math.log(2)).all()
    # swapping the arguments of JSD_β is JSD_{1−β}
    torch.testing.assert_close(
        generalized_jsd.full(zp, zq, GeneralizedJSDParams(beta=0.2)),
        generalized_jsd.full(zq, zp, GeneralizedJSDParams(beta=0.8)), rtol=0, atol=1e-15,
    )


def test_small_beta_limits_are_scaled_kls():
    torch.manual_seed(2)
    zp, zq = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    eps = 1e-6
    # JSD_β/β → KL(q‖p) as β → 0 and JSD_β/(1−β) → KL(p‖q) as β → 1; the error is O(β)
    torch.testing.assert_close(
        generalized_jsd.full(zp, zq, GeneralizedJSDParams(beta=eps)) / eps, forward_kl.full(zp, zq, ForwardKLParams()),
        rtol=0, atol=1e-5,
    )
    torch.testing.assert_close(
        generalized_jsd.full(zp, zq, GeneralizedJSDParams(beta=1 - eps)) / eps, reverse_kl.full(zp, zq, ReverseKLParams()),
        rtol=0, atol=1e-5,
    )
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="forward_kl"):
            GeneralizedJSDParams(beta=bad)


def test_sampled_generator_matches_sketch_and_dph_rl():
    log_u = torch.linspace(-4, 4, 17, dtype=torch.float64)
    u = log_u.exp()
    f, fp = js(log_u, JSParams())
    # DPH-RL: f(u) = ½·[u·log u − (u+1)·log((u+1)/2)];  f′(u) = ½·log(2u/(u+1))
    torch.testing.assert_close(f, 0.5 * (u * log_u - (u + 1) * torch.log((u + 1) / 2)), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(fp, 0.5 * torch.log(2 * u / (u + 1)), rtol=0, atol=1e-14)


def _trl_generalized_jsd_loss():
    """TRL's function, compiled from its installed source without importing transformers (keeps this < 1 s)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("trl is not installed")
    path = Path(spec.submodule_search_locations[0]) / "experimental" / "gkd" / "gkd_trainer.py"
    if not path.exists():
        pytest.skip(f"{path} not found (TRL layout changed)")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "generalized_jsd_loss":
            node.decorator_list = []  # @staticmethod
            namespace = {"torch": torch, "F": torch.nn.functional}
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
            return namespace["generalized_jsd_loss"]
    pytest.skip("GKDTrainer.generalized_jsd_loss not found")


def test_matches_trl_gkd_generalized_jsd():
    """TRL 1.16 GKDTrainer.generalized_jsd_loss(student, teacher, beta): same β (teacher weight in the
    mixture), summed over (B, T, V) with reduction="sum"; ours is per token, so compare Σ_bt.
    Measured max |diff| over β ∈ {0.1, 0.5, 0.9} in float64: 8.9e-16 on the sum, ≤ 1e-14 per token
    (asserted ≤ 1e-13 / 1e-14); in float32 per token 1.2e-7.
    TRL's β = 0 / β = 1 are KL(teacher‖student) / KL(student‖teacher): our forward_kl / reverse_kl."""
    trl_loss = _trl_generalized_jsd_loss()
    torch.manual_seed(3)
    student, teacher = 3 * torch.randn(2, 5, 11, dtype=torch.float64), 3 * torch.randn(2, 5, 11, dtype=torch.float64)
    for beta in (0.1, 0.5, 0.9):
        ours = generalized_jsd.full(student, teacher, GeneralizedJSDParams(beta=beta))
        theirs = trl_loss(student, teacher, beta=beta, reduction="sum")
        assert abs(ours.sum().item() - theirs.item()) <= 1e-13
        # per token: TRL with B·T rows of one token each and "sum" gives each token's JSD
        per_token = torch.stack([
            trl_loss(student[b, t][None], teacher[b, t][None], beta=beta, reduction="sum")
            for b in range(2) for t in range(5)
        ]).view(2, 5)
        torch.testing.assert_close(ours, per_token, rtol=0, atol=1e-14)
        # batchmean divides the sum by B (the first dim) in TRL
        assert trl_loss(student, teacher, beta=beta).item() == pytest.approx(ours.sum().item() / 2, abs=1e-13)
    torch.testing.assert_close(
        trl_loss(student, teacher, beta=0.0, reduction="sum"), forward_kl.full(student, teacher, ForwardKLParams()).sum(),
        rtol=0, atol=1e-13,
    )
    torch.testing.assert_close(
        trl_loss(student, teacher, beta=1.0, reduction="sum"), reverse_kl.full(student, teacher, ReverseKLParams()).sum(),
        rtol=0, atol=1e-13,
    )
    # temperature τ: TRL divides both logits by τ, as full(..., temperature=τ) does
    ours_t = generalized_jsd.full(student, teacher, GeneralizedJSDParams(beta=0.3), temperature=2.0).sum()
    assert abs(ours_t.item() - trl_loss(student, teacher, beta=0.3, temperature=2.0, reduction="sum").item()) <= 1e-13
