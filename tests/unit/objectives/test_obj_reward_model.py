"""Bradley-Terry loss (closed forms, gradient) and the LoRA nuclear-norm diversity term."""

import math

import pytest
import torch

from alignrl.objectives.reward_model import BradleyTerryParams, bradley_terry_loss, lora_nuclear_diversity


def test_bradley_terry_closed_form_and_metrics():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    out = bradley_terry_loss(chosen, rejected, BradleyTerryParams())
    expected = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert float(out.loss) == pytest.approx(expected, rel=1e-6)
    assert float(out.metrics["accuracy"]) == 0.5 and float(out.metrics["margin"]) == 0.0
    # equal scores: log 2, whatever their level
    tie = bradley_terry_loss(torch.full((3,), 7.0), torch.full((3,), 7.0), BradleyTerryParams())
    assert float(tie.loss) == pytest.approx(math.log(2), rel=1e-6)


def test_margin_and_centering_terms():
    chosen, rejected = torch.tensor([3.0]), torch.tensor([1.0])
    with_margin = bradley_terry_loss(chosen, rejected, BradleyTerryParams(), margin=torch.tensor([2.0]))
    assert float(with_margin.loss) == pytest.approx(math.log(2), rel=1e-6)  # σ(3 − 1 − 2) = 1/2
    centred = bradley_terry_loss(chosen, rejected, BradleyTerryParams(center_rewards_coefficient=0.01))
    plain = bradley_terry_loss(chosen, rejected, BradleyTerryParams())
    assert float(centred.loss - plain.loss) == pytest.approx(0.01 * 16.0, rel=1e-6)


def test_gradient_is_sigmoid_of_minus_the_difference():
    chosen = torch.tensor([0.5, -1.0], requires_grad=True)
    rejected = torch.tensor([0.0, 0.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected, BradleyTerryParams()).loss.backward()
    # d/dr_w [−log σ(d)]/B = −σ(−d)/B ; d/dr_l = +σ(−d)/B
    expected = -torch.sigmoid(-(chosen.detach() - rejected.detach())) / 2
    torch.testing.assert_close(chosen.grad, expected)
    torch.testing.assert_close(rejected.grad, -expected)


def test_nuclear_norm_of_stacked_normalized_lora_matrices():
    a1 = torch.tensor([[3.0, 0.0, 0.0]])
    assert float(lora_nuclear_diversity([a1, a1.clone()])) == pytest.approx(math.sqrt(2))  # same direction: √K
    a2 = torch.tensor([[0.0, 5.0, 0.0]])
    assert float(lora_nuclear_diversity([a1, a2])) == pytest.approx(2.0)  # orthogonal: K
    # scale-free: inflating a member changes nothing, turning it does
    assert float(lora_nuclear_diversity([10 * a1, a1])) == pytest.approx(math.sqrt(2))
    assert lora_nuclear_diversity([a1, a2]) > lora_nuclear_diversity([a1, a1 + 0.1 * a2])
    with pytest.raises(ValueError):
        lora_nuclear_diversity([])
