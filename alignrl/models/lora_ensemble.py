"""K reward models on one frozen backbone: per-member LoRA adapters on the target linears and per-member scalar
heads (UP-RLHF's "diverse reward LoRA ensemble", Zhai et al. 2023, arXiv:2401.00243).

Memory while training: one backbone plus K·(adapters + head). ``set_member(k)`` routes every wrapped linear and
the head through member k, so one module serves all K forwards of a step (the loop sums their losses, plus the
diversity term over ``lora_a_groups``). Why our own wrapper rather than PEFT's multi-adapter models: PEFT trains
one active adapter at a time (switching flips requires_grad), while here all K members take gradient in the same
optimizer step, and the diversity term needs every member's A matrix of a layer side by side.
Initialization as PEFT: A Kaiming-uniform, B zero, so each member starts as the backbone with its own head.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoraEnsembleLinear(nn.Module):
    """y = W x + (α/r) · B_m A_m x for the active member m; W frozen."""

    def __init__(self, base: nn.Linear, members: int, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        self.lora_a = nn.Parameter(torch.empty(members, r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(members, base.out_features, r))
        for k in range(members):
            nn.init.kaiming_uniform_(self.lora_a.data[k], a=math.sqrt(5))
        self.member = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lora_a[self.member], self.lora_b[self.member]
        return self.base(x) + (x @ a.T @ b.T) * self.scaling

    def merged_weight(self, member: int) -> torch.Tensor:
        return self.base.weight + self.scaling * (self.lora_b[member] @ self.lora_a[member])


class MemberHeads(nn.Module):
    """K scalar heads (hidden -> 1, no bias, like HF's ``score``); the active one scores."""

    def __init__(self, hidden: int, members: int, std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, 1, hidden) * std)
        self.member = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight[self.member].T


class LoraRewardEnsemble(nn.Module):
    """A sequence-classification model turned into K LoRA members; ``forward`` is the active member's."""

    def __init__(self, model: nn.Module, members: int, r: int, alpha: float, target_modules: tuple[str, ...]) -> None:
        super().__init__()
        model.requires_grad_(False)
        self.members = members
        self.wrapped: list[tuple[str, LoraEnsembleLinear]] = []
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if child_name in target_modules and isinstance(child, nn.Linear):
                    wrapper = LoraEnsembleLinear(child, members, r, alpha)
                    setattr(module, child_name, wrapper)
                    self.wrapped.append((f"{name}.{child_name}" if name else child_name, wrapper))
        if not self.wrapped:
            raise ValueError(f"no nn.Linear named {list(target_modules)} in the model: check learner.lora.target_modules")
        std = getattr(model.config, "initializer_range", 0.02)
        model.score = MemberHeads(model.config.hidden_size, members, std)
        self.model = model

    @property
    def config(self):
        return self.model.config

    def set_member(self, k: int) -> None:
        for _, layer in self.wrapped:
            layer.member = k
        self.model.score.member = k

    def forward(self, **kw):
        return self.model(**kw)

    def lora_a_groups(self) -> list[list[torch.Tensor]]:
        """Per wrapped layer, the K members' A matrices (each (r, d_in))."""
        return [[layer.lora_a[k] for k in range(self.members)] for _, layer in self.wrapped]

    @torch.no_grad()
    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member k as a plain HF sequence-classifier state dict: W + (α/r)·B_k A_k, ``score.weight`` its head."""
        merged = {f"{name}.weight": layer.merged_weight(k) for name, layer in self.wrapped}
        out = {}
        for name, t in self.model.state_dict().items():
            if ".lora_a" in name or ".lora_b" in name:
                continue
            if name == "score.weight":
                out[name] = self.model.score.weight[k].detach().clone()
                continue
            plain = name.replace(".base.weight", ".weight").replace(".base.bias", ".bias")
            out[plain] = merged.get(plain, t).detach().clone()
        return {k_: v.to("cpu") for k_, v in out.items()}
