"""Section ``losses``: each alignrl loss against its TRL 1.16 counterpart, forward + backward, same inputs.

Logits level ((B, T, V) float32 student logits with grad; teacher logits without; ~25 % of the positions
masked off by random right padding, TRL's ``labels`` = −100 there):

| ours                                         | TRL 1.16                                                  |
|----------------------------------------------|-----------------------------------------------------------|
| DISTILL_LOSSES jsd, gkd (β = 0.5)            | ``GKDTrainer.generalized_jsd_loss`` β = 0.5, batchmean    |
| DISTILL_LOSSES fkl / rkl                     | the same at β = 0 / β = 1 (its FKL / RKL endpoints)       |
| ``ops.selective_log_softmax`` (token ids)    | ``trl.trainer.utils.selective_log_softmax``               |
| ``objectives.entropy.token_entropy``         | ``trl.trainer.utils.entropy_from_logits``                 |
(the last two get the same masked token mean on top, so both sides end in a scalar to differentiate.)

Sequence level (B = 64 pairs / sequences, T = 512, float32 per-token log-probs with grad; cheap):
the preference losses dpo, ipo (length-normalised), hinge, robust_dpo against TRL's
``DPOTrainer._compute_loss`` (loss types sigmoid, ipo, hinge, robust), and ppo + β·k3 with GRPO's
aggregation against ``GRPOTrainer._compute_loss`` (loss_type grpo, β = 0.04), both TRL paths called
unbound with a stand-in ``self`` exactly as in tests/unit/objectives/test_pref_vs_trl.py and
test_obj_trl_parity.py. Ours starts from the same per-token leaf and includes its own sequence sums,
lengths, advantage broadcast and k3 estimator; TRL's includes its in-loss metric bookkeeping.

Timing: per pair, one call per side first (it checks that loss and gradient agree, and warms up), then
``repeats`` interleaved rounds ours, TRL, ours, TRL, ... in this process; a round of a cheap pair runs
``n_inner`` back-to-back calls (same count on both sides) and reports seconds per call. The ratio is
the median of the per-round ratios ours/TRL, with its min–max spread.

Peak memory (logits level): in a separate process (``python -m benchmarks.losses --probe``) with
glibc's mmap threshold pinned at 64 KiB, so freed blocks go back to the OS and the resident set follows
live memory. Per side: allocate the inputs, reset the kernel's high-water mark (``/proc/self/clear_refs``
← 5), run forward + backward once (keeping the gradient), read ``VmHWM``. Reported as (peak − resident
set after the inputs) / bytes of one (B, T, V) float32 tensor; the gradient w.r.t. the student logits
is itself one such unit and is included. Where the high-water mark cannot be reset, each measurement
gets its own process and ``ru_maxrss``.

Sizes: the issue asks for B = 64, T = 512, V = 32768 at the logits level: 4.3 GB per (B, T, V) float32
tensor. A pilot probe at B = 1 measures every side's peak in those units; the largest B in
64, 32, 16, 8, ... whose worst side (inputs + peak + the other side's gradient, held during the
agreement check) fits in half of MemAvailable is used for both sides, and the JSON says why.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from benchmarks.common import interleave, machine, paired_ratio, print_table, set_threads, setup_env, spread, versions

ISSUE_LOGITS = {"B": 64, "T": 512, "V": 32768}
B_CANDIDATES = (64, 32, 16, 8, 4, 2, 1)
MEM_FRACTION = 0.5  # share of MemAvailable the logits-level sizes may plan for
PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


@dataclass(frozen=True)
class LossSettings:
    """Everything both sides share (the JSON states it)."""

    logits_B: int = 8               # chosen by the pilot probe in a full run (see the module docstring)
    logits_T: int = 512
    logits_V: int = 32768
    seq_B: int = 64                 # pairs (preference: 2B rows) or sequences (policy)
    seq_T: int = 512
    dtype: str = "float32"
    seed: int = 0
    logits_repeats: int = 5
    seq_repeats: int = 15
    seq_round_s: float = 0.25       # target seconds per round of a cheap pair (sets n_inner)
    jsd_beta: float = 0.5
    pref_beta: float = 0.1
    robust_eps: float = 0.1
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_beta: float = 0.04


QUICK = dict(logits_B=4, logits_T=64, logits_V=4096, seq_B=64, seq_T=512, logits_repeats=3, seq_repeats=3,
             seq_round_s=0.02)


# ---- inputs -------------------------------------------------------------------------------------------------

def _logits_inputs(B: int, T: int, V: int, seed: int) -> SimpleNamespace:
    """Student/teacher logits ~ 3·N(0, 1) generated in place (no temporaries), mask, TRL labels, token ids."""
    import torch

    g = torch.Generator().manual_seed(seed)
    zs = torch.empty(B, T, V).normal_(generator=g).mul_(3.0).requires_grad_()
    zt = torch.empty(B, T, V).normal_(generator=g).mul_(3.0)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return SimpleNamespace(zs=zs, zt=zt, mask=mask, labels=torch.where(mask, 1, -100),
                           ids=torch.randint(0, V, (B, T), generator=g))


def _pref_inputs(B: int, T: int, seed: int) -> SimpleNamespace:
    """TRL layout (2B rows: chosen then rejected) per-token log-prob leaf, as test_pref_vs_trl._batch."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 4, T + 1, (2 * B,), generator=g)
    completion = torch.zeros(2 * B, T + 1, dtype=torch.long)  # column 0 is the prompt token
    completion[:, 1:] = (torch.arange(T)[None, :] < lengths[:, None]).long()
    tok = (-torch.rand(2 * B, T, generator=g) * 1.5 * completion[:, 1:]).requires_grad_()
    ref = tok.detach().sum(1) + torch.randn(2 * B, generator=g) * 2
    inputs = {"input_ids": torch.zeros(2 * B, T + 1, dtype=torch.long), "attention_mask": torch.ones(2 * B, T + 1),
              "completion_mask": completion, "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:]}
    zeros = torch.zeros_like(tok)
    model_out = SimpleNamespace(log_probs=tok, entropy=zeros, mean_logits=zeros,
                                is_top1=torch.zeros(tok.shape, dtype=torch.bool))
    return SimpleNamespace(B=B, tok=tok, completion=completion, inputs=inputs, model=lambda **kw: model_out)


def _policy_inputs(B: int, T: int, seed: int) -> SimpleNamespace:
    """(B, T) policy / old / reference log-probs, right-padded mask, sequence advantages (test_obj_trl_parity)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g) * 3
    logp = (logp_old + torch.randn(B, T, generator=g) * 0.3).requires_grad_()
    logp_ref = logp_old + torch.randn(B, T, generator=g) * 0.2
    lengths = torch.randint(T // 4, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return SimpleNamespace(B=B, T=T, logp=logp, logp_old=logp_old, logp_ref=logp_ref, mask=mask,
                           adv_seq=torch.randn(B, generator=g))


# ---- the pairs: each side is a callable(inputs) -> (loss, gradient w.r.t. the leaf) -------------------------

Side = Callable[[SimpleNamespace], tuple[Any, Any]]


class Pair(NamedTuple):
    peer_fn: str  # TRL's function, qualified
    peer: str  # its short label (the table)
    ours: Side
    trl: Side


def _grad(loss, leaf):
    import torch

    (g,) = torch.autograd.grad(loss, (leaf,))
    return loss.detach(), g


def _masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def _trl_jsd():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRLExperimentalWarning on import
        from trl.experimental.gkd.gkd_trainer import GKDTrainer
    return GKDTrainer.generalized_jsd_loss


def logits_pairs(s: LossSettings) -> dict[str, Pair]:
    """name -> Pair(TRL function, short label, ours, TRL)."""
    from trl.trainer.utils import entropy_from_logits
    from trl.trainer.utils import selective_log_softmax as trl_sls

    from alignrl.objectives.distill_base import DistillInputs
    from alignrl.objectives.entropy import token_entropy
    from alignrl.objectives.gkd import GKDParams, gkd_loss
    from alignrl.objectives.kd import FKLLossParams, JSDLossParams, RKLLossParams, fkl_loss, jsd_loss, rkl_loss
    from alignrl.ops.logprobs import selective_log_softmax

    trl_jsd = _trl_jsd()

    def ours_distill(fn, params):
        return lambda x: _grad(fn(DistillInputs(logits=x.zs, logits_teacher=x.zt, mask=x.mask), params).loss, x.zs)

    def trl_distill(beta):
        return lambda x: _grad(trl_jsd(x.zs, x.zt, labels=x.labels, beta=beta), x.zs)

    b, gkd = s.jsd_beta, "trl.experimental.gkd.GKDTrainer.generalized_jsd_loss(reduction='batchmean', labels)"
    return {
        "jsd": Pair(gkd, f"GKD jsd β={b}", ours_distill(jsd_loss, JSDLossParams(beta=b)), trl_distill(b)),
        "gkd": Pair(gkd, f"GKD jsd β={b}", ours_distill(gkd_loss, GKDParams(beta=b)), trl_distill(b)),
        "fkl": Pair(gkd, "GKD jsd β=0", ours_distill(fkl_loss, FKLLossParams()), trl_distill(0.0)),
        "rkl": Pair(gkd, "GKD jsd β=1", ours_distill(rkl_loss, RKLLossParams()), trl_distill(1.0)),
        "selective_log_softmax": Pair(
            "trl.trainer.utils.selective_log_softmax", "same name",
            lambda x: _grad(_masked_mean(selective_log_softmax(x.zs, x.ids), x.mask), x.zs),
            lambda x: _grad(_masked_mean(trl_sls(x.zs, x.ids), x.mask), x.zs)),
        "entropy": Pair(
            "trl.trainer.utils.entropy_from_logits", "entropy_from_logits",
            lambda x: _grad(_masked_mean(token_entropy(x.zs), x.mask), x.zs),
            lambda x: _grad(_masked_mean(entropy_from_logits(x.zs), x.mask), x.zs)),
    }


class _Accelerator:
    device = "cpu"
    num_processes = 1
    sync_gradients = True

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def pref_pairs(s: LossSettings) -> dict[str, Pair]:
    from trl.trainer.dpo_trainer import DPOTrainer

    from alignrl.objectives.dpo import DPOParams, RobustDPOParams, dpo_loss, robust_dpo_loss
    from alignrl.objectives.hinge import HingeParams, hinge_loss
    from alignrl.objectives.ipo import IPOParams, ipo_loss
    from alignrl.objectives.preference_base import PreferenceInputs

    def ours(fn, params):
        def side(x):
            sums, lengths = x.tok.sum(1), x.completion[:, 1:].sum(1)
            pi = PreferenceInputs(
                logp_chosen=sums[:x.B], logp_rejected=sums[x.B:], logp_ref_chosen=x.inputs["ref_chosen_logps"],
                logp_ref_rejected=x.inputs["ref_rejected_logps"], len_chosen=lengths[:x.B],
                len_rejected=lengths[x.B:])
            return _grad(fn(pi, params).loss, x.tok)
        return side

    def trl(loss_type, beta, eps=0.0):
        fake_self = SimpleNamespace(
            model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
            precompute_ref_logps=True, f_divergence_type="reverse_kl", f_alpha_divergence_coef=0.5,
            loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=eps, use_weighting=False,
            args=SimpleNamespace(discopop_tau=0.05), _total_train_tokens=0, _tp_size=1)

        def side(x):
            fake_self._metrics = defaultdict(lambda: defaultdict(list))
            return _grad(DPOTrainer._compute_loss(fake_self, x.model, x.inputs, False), x.tok)
        return side

    b, eps, fn = s.pref_beta, s.robust_eps, "trl.trainer.dpo_trainer.DPOTrainer._compute_loss"
    return {
        "dpo": Pair(f"{fn} loss_type=sigmoid", "DPO sigmoid", ours(dpo_loss, DPOParams(beta=b)), trl("sigmoid", b)),
        "ipo": Pair(f"{fn} loss_type=ipo", "DPO ipo", ours(ipo_loss, IPOParams(beta=b, length_normalize=True)),
                    trl("ipo", b)),
        "hinge": Pair(f"{fn} loss_type=hinge", "DPO hinge", ours(hinge_loss, HingeParams(beta=b)), trl("hinge", b)),
        "robust_dpo": Pair(f"{fn} loss_type=robust", f"DPO robust ε={eps}",
                           ours(robust_dpo_loss, RobustDPOParams(beta=b, label_smoothing=eps)), trl("robust", b, eps)),
    }


def policy_pairs(s: LossSettings) -> dict[str, Pair]:
    import torch
    from trl.trainer.grpo_trainer import GRPOTrainer

    from alignrl.divergences.kl import KLEstimatorParams, kl_k3
    from alignrl.objectives.ppo import PPOParams, ppo_loss
    from alignrl.ops import aggregate

    p = PPOParams(clip_low=s.clip_low, clip_high=s.clip_high, loss_agg="seq_mean_token_mean")
    kp = KLEstimatorParams()

    def ours(x):
        adv = x.adv_seq[:, None] * x.mask
        loss = ppo_loss(x.logp, x.logp_old, adv, x.mask, p).loss
        loss = loss + s.kl_beta * aggregate(kl_k3(x.logp, x.logp_ref, None, kp), x.mask, p.loss_agg)
        return _grad(loss, x.logp)

    state: dict[str, Any] = {}

    def trl(x):
        if state.get("x") is not x:  # stand-in self and inputs built once per input set
            zeros = torch.zeros_like(x.logp)
            state["x"] = x
            state["self"] = SimpleNamespace(
                _get_per_token_logps_and_entropies=lambda *a, **k: (x.logp, zeros, None),
                top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
                beta=s.kl_beta, loss_type="grpo", epsilon_low=s.clip_low, epsilon_high=s.clip_high,
                args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
                use_vllm=False, vllm_importance_sampling_correction=False, model=SimpleNamespace(training=True),
                current_gradient_accumulation_steps=1, max_completion_length=x.T, accelerator=_Accelerator(),
                _entropy_bonus_enabled=False, aux_loss_enabled=False)
            state["inputs"] = {
                "prompt_ids": torch.zeros(x.B, 1, dtype=torch.long), "prompt_mask": torch.ones(x.B, 1, dtype=torch.long),
                "completion_ids": torch.zeros(x.B, x.T, dtype=torch.long), "completion_mask": x.mask.float(),
                "advantages": x.adv_seq, "old_per_token_logps": x.logp_old, "ref_per_token_logps": x.logp_ref,
                "num_items_in_batch": x.mask.sum().float()}
        fake_self = state["self"]
        fake_self._metrics = defaultdict(lambda: defaultdict(list))
        return _grad(GRPOTrainer._compute_loss(fake_self, None, state["inputs"]), x.logp)

    return {"ppo_k3": Pair(f"trl.trainer.grpo_trainer.GRPOTrainer._compute_loss loss_type=grpo beta={s.kl_beta}",
                           f"GRPO grpo + {s.kl_beta}·k3", ours, trl)}


# ---- peak memory ---------------------------------------------------------------------------------------------

def _status_kb(*fields: str) -> list[int]:
    """The named ``/proc/self/status`` fields in kB, from one read."""
    with open("/proc/self/status") as f:
        found = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f if ":" in line) if k in fields}
    return [found[k] for k in fields]


def _reset_peak() -> bool:
    """Reset the resident-set high-water mark to the current resident set (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _can_reset_peak() -> bool:
    """Does a reset really bring VmHWM down after a 64 MiB block was touched and freed?"""
    import torch

    block = torch.ones(16 * 2**20)
    del block
    _release()
    if not _reset_peak():
        return False
    hwm, rss = _status_kb("VmHWM", "VmRSS")
    return hwm - rss < 16 * 1024


def _release() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _measure(pairs: dict, x: SimpleNamespace, names: list[tuple[str, str]], resettable: bool) -> dict:
    """{pair: {side: peak bytes over the resident set after the inputs}} for the given (pair, side)s."""
    import resource

    out: dict[str, dict[str, int]] = defaultdict(dict)
    for name, side in names:
        fn = getattr(pairs[name], side)
        _release()
        if resettable:
            _reset_peak()
        (base_kb,) = _status_kb("VmHWM" if resettable else "VmRSS")  # VmHWM: the resident set at the reset
        if not resettable and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > base_kb + 1024:
            raise RuntimeError("the high-water mark is above the resident set before the call: unusable")
        result = fn(x)
        peak_kb = _status_kb("VmHWM")[0] if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out[name][side] = (peak_kb - base_kb) * 1024
        del result
    return dict(out)


def probe(spec: dict) -> dict:
    """Peak memory of the logits-level sides (run in a fresh process; see the module docstring)."""
    setup_env()
    set_threads(spec["threads"])
    s = LossSettings(**spec["settings"])
    pairs = logits_pairs(s)
    names = [tuple(n) for n in spec.get("only") or [(p, side) for p in pairs for side in ("ours", "trl")]]
    resettable = _can_reset_peak()
    if not resettable and len(names) > 1:
        return {"resettable": False}
    small = _logits_inputs(1, 8, s.logits_V, s.seed + 1)
    for name, side in names:  # warm-up: page in the code paths and one-time allocations
        getattr(pairs[name], side)(small)
    del small
    result: dict[str, Any] = {"resettable": resettable, "env": {k: os.environ.get(k) for k in PROBE_ENV}}
    if spec.get("pilot_B"):
        pb = spec["pilot_B"]
        x = _logits_inputs(pb, s.logits_T, s.logits_V, s.seed)
        unit = pb * s.logits_T * s.logits_V * 4
        peaks = _measure(pairs, x, names, resettable)
        del x
        units = {n: {side: v / unit for side, v in d.items()} for n, d in peaks.items()}
        # inputs (2) + the worst side's peak + the other side's gradient kept during the agreement check (1)
        need = 3 + max(v for d in units.values() for v in d.values())
        budget = MEM_FRACTION * spec["mem_available"]
        fits = [b for b in B_CANDIDATES if need * b * s.logits_T * s.logits_V * 4 <= budget]
        chosen = min(fits[0] if fits else 1, spec["max_B"])
        result["pilot"] = {"B": pb, "units": units, "need_units": need, "budget_bytes": budget,
                           "need_bytes_at_issue_B": need * unit * ISSUE_LOGITS["B"] / pb, "chosen_B": chosen}
        s = LossSettings(**{**spec["settings"], "logits_B": chosen})
    _release()
    (before_kb,) = _status_kb("VmRSS")
    x = _logits_inputs(s.logits_B, s.logits_T, s.logits_V, s.seed)
    unit = s.logits_B * s.logits_T * s.logits_V * 4
    result["B"] = s.logits_B
    result["unit_bytes"] = unit
    result["inputs_units"] = (_status_kb("VmRSS")[0] - before_kb) * 1024 / unit
    result["peak_bytes"] = _measure(pairs, x, names, resettable)
    return result


def run_probe(spec: dict) -> dict:
    """``probe(spec)`` in a child process with the pinned mmap threshold; per-measurement children as fallback."""
    def child(sp: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
            spec_path.write_text(json.dumps(sp))
            cmd = [sys.executable, "-m", "benchmarks.losses", "--probe", str(spec_path), str(out_path)]
            done = subprocess.run(cmd, env={**os.environ, **PROBE_ENV}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"memory probe failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
            return json.loads(out_path.read_text())

    out = child(spec)
    if out["resettable"]:
        return out
    # no peak reset here: one process per (pair, side), ru_maxrss; the pilot is skipped (B from the settings)
    merged: dict[str, Any] = {"resettable": False, "peak_bytes": defaultdict(dict)}
    pairs = [(p, side) for p in spec["pairs"] for side in ("ours", "trl")]
    for name, side in pairs:
        got = child({**spec, "pilot_B": None, "only": [[name, side]]})
        merged["peak_bytes"][name][side] = got["peak_bytes"][name][side]
        merged.update({k: got[k] for k in ("B", "unit_bytes", "inputs_units", "env")})
    return merged


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


# ---- timing --------------------------------------------------------------------------------------------------

def _agreement(ours: Side, trl: Side, x: SimpleNamespace) -> dict[str, float]:
    """One call per side (also the warm-up): |Δloss|, relative, and the largest |Δgrad| against max |grad|."""
    lo, go = ours(x)
    lt, gt = trl(x)
    d_grad = (go - gt).abs().max().item()
    return {"loss_ours": lo.item(), "loss_trl": lt.item(), "abs_diff": abs(lo.item() - lt.item()),
            "rel_diff": abs(lo.item() - lt.item()) / max(abs(lt.item()), 1e-30),
            "grad_max_abs_diff": d_grad, "grad_max_abs": gt.abs().max().item()}


def _runner(side: Side, x: SimpleNamespace, n_inner: int) -> Callable[[], dict[str, float]]:
    def run() -> dict[str, float]:
        start = time.perf_counter()
        for _ in range(n_inner):
            side(x)
        return {"seconds": (time.perf_counter() - start) / n_inner}
    return run


def _time_pairs(level: str, pairs: dict, x: SimpleNamespace, repeats: int, round_s: float | None) -> list[dict]:
    rows = []
    for name, (peer_fn, peer, ours, trl) in pairs.items():
        load = list(os.getloadavg())
        check = _agreement(ours, trl, x)
        n_inner = 1
        if round_s:  # cheap pair: calibrate the calls per round on the slower side
            one = max(_runner(ours, x, 3)()["seconds"], _runner(trl, x, 3)()["seconds"])
            n_inner = max(1, min(10000, math.ceil(round_s / one)))
        kept = interleave({"ours": _runner(ours, x, n_inner), "trl": _runner(trl, x, n_inner)}, repeats, warmup=0,
                          label=f"losses {name}")
        o, t = [r["seconds"] for r in kept["ours"]], [r["seconds"] for r in kept["trl"]]
        rows.append({"name": name, "level": level, "peer": peer, "peer_fn": peer_fn, "n_inner": n_inner,
                     "ours_s": spread(o), "trl_s": spread(t), "ratio_ours_over_trl": paired_ratio(o, t),
                     "rounds": {"ours": o, "trl": t}, "agreement": check,
                     "loadavg": {"start": load, "end": list(os.getloadavg())}})
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result and prints a table."""
    import torch

    s = LossSettings(**QUICK) if quick else LossSettings()
    load_start = machine()["loadavg"]
    mem_available = _mem_available()
    names = list(logits_pairs(s))
    spec = {"settings": asdict(s), "threads": torch.get_num_threads(), "pairs": names,
            "mem_available": mem_available, "max_B": ISSUE_LOGITS["B"], "pilot_B": None if quick else 1}
    if not quick:
        spec["settings"].update(logits_T=ISSUE_LOGITS["T"], logits_V=ISSUE_LOGITS["V"])
    print(f"losses: memory probe ({'pilot at B=1, then ' if not quick else ''}the chosen sizes) ...",
          file=sys.stderr, flush=True)
    mem = run_probe(spec)
    if "pilot" in mem:
        s = LossSettings(**{**spec["settings"], "logits_B": mem["pilot"]["chosen_B"]})
    unit = mem["unit_bytes"]
    if quick:
        size_note = "quick: small sizes (smoke test)"
    elif s.logits_B == ISSUE_LOGITS["B"]:
        size_note = "the issue's sizes"
    elif "pilot" not in mem:
        size_note = (f"B={s.logits_B} fixed (no pilot: this kernel's high-water mark cannot be reset); the issue's "
                     f"B={ISSUE_LOGITS['B']} needs over 15 (B, T, V) float32 units of 4.3 GB for TRL's JSD")
    else:
        p = mem["pilot"]
        size_note = (f"B scaled from {ISSUE_LOGITS['B']} to {s.logits_B} for both sides: the worst side needs "
                     f"{p['need_units']:.1f} (B, T, V) float32 units (inputs 2 + peak + 1 gradient held in the "
                     f"agreement check) = {p['need_bytes_at_issue_B'] / 2**30:.0f} GiB at B={ISSUE_LOGITS['B']}, "
                     f"budget {MEM_FRACTION:.0%} of MemAvailable = {p['budget_bytes'] / 2**30:.1f} GiB")
    print(f"losses: logits level B={s.logits_B} T={s.logits_T} V={s.logits_V} ({size_note})", file=sys.stderr,
          flush=True)

    x = _logits_inputs(s.logits_B, s.logits_T, s.logits_V, s.seed)
    rows = _time_pairs("logits", logits_pairs(s), x, s.logits_repeats, None)
    del x
    gc.collect()
    rows += _time_pairs("sequence", pref_pairs(s), _pref_inputs(s.seq_B, s.seq_T, s.seed), s.seq_repeats,
                        s.seq_round_s)
    rows += _time_pairs("sequence", policy_pairs(s), _policy_inputs(s.seq_B, s.seq_T, s.seed), s.seq_repeats,
                        s.seq_round_s)
    for row in rows:
        peaks = mem["peak_bytes"].get(row["name"])
        if peaks:
            row["peak_memory"] = {side: {"bytes": v, "units": v / unit} for side, v in peaks.items()}

    table = []
    for row in rows:
        r, m = row["ratio_ours_over_trl"], row.get("peak_memory")
        table.append([row["name"], row["peer"], row["ours_s"]["median"] * 1e3, row["trl_s"]["median"] * 1e3,
                      r["median"], f"{r['min']:.2f}-{r['max']:.2f}",
                      m["ours"]["units"] if m else "", m["trl"]["units"] if m else "",
                      f"{row['agreement']['rel_diff']:.0e}"])
    print_table(f"losses: forward + backward, ours vs TRL 1.16 (logits B={s.logits_B} T={s.logits_T} "
                f"V={s.logits_V}; sequence B={s.seq_B} T={s.seq_T})",
                ["loss", "TRL peer", "ours ms", "TRL ms", "ours/TRL", "min-max", "mem ours", "mem TRL",
                 "Δloss"], table)
    print(f"ours/TRL: median of {s.logits_repeats} (logits) / {s.seq_repeats} (sequence) interleaved per-round "
          f"ratios. Δloss: relative loss difference. mem: peak over the inputs in units of one (B, T, V) float32 "
          f"tensor ({unit / 2**20:.0f} MiB), the gradient w.r.t. the student logits (1 unit) included. "
          f"Sizes: {size_note}.", flush=True)
    return {
        "section": "losses", "quick": quick, "settings": asdict(s),
        "sizes": {"logits": {"B": s.logits_B, "T": s.logits_T, "V": s.logits_V, "issue": ISSUE_LOGITS,
                             "unit_bytes": unit, "note": size_note},
                  "sequence": {"B": s.seq_B, "T": s.seq_T}},
        "memory_probe": {**{k: v for k, v in mem.items() if k != "peak_bytes"},
                         "mem_available_at_start": mem_available,
                         "method": "fresh process, glibc mmap threshold pinned at 64 KiB; per side: inputs "
                                   "allocated, VmHWM reset via /proc/self/clear_refs, one forward + backward "
                                   "(gradient kept), peak = VmHWM − VmRSS before the call; units = peak / "
                                   "(B·T·V·4 bytes); the gradient w.r.t. the student logits is 1 unit of it"},
        "timing": "per pair: one agreement/warm-up call per side, then interleaved rounds ours, TRL, ...; "
                  "n_inner calls per round (cheap pairs), seconds per call; ratio = median of per-round ratios",
        "loadavg_start": load_start, "machine": machine(), "versions": versions("trl", "torch", "transformers"),
        "pairs": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.losses")
    parser.add_argument("--probe", nargs=2, metavar=("SPEC_JSON", "OUT_JSON"), required=True,
                        help="internal: measure peak memory as the spec says and write the result")
    args = parser.parse_args()
    Path(args.probe[1]).write_text(json.dumps(probe(json.loads(Path(args.probe[0]).read_text()))))
