"""The Lopti paper's Fig. 1 and Fig. 3 measured on single updates (arXiv 2505.12929).

Per probe batch (a fresh GRPO batch of the warm-start policy), with fixed π_old intervals
[0, .25), [.25, .5), [.5, .75), [.75, 1] (the reference code's ``mask_prob_interval``):

- per-token gradient norms ‖∇_θ A_t ln π(y_t)‖ = |A_t| ‖∇_θ ln π(y_t)‖ over every parameter, on up to
  ``per_bin`` tokens drawn per interval (Fig. 1d), and the OLS fit of ‖∇_θ ln π‖ on (1 − π)
  (Prop. 4.2: the norm scales with 1 − π);
- one full SGD update, one on the lowest interval's tokens only and one on the highest's only
  (Fig. 1c, e, f), at the same lr: the change Δπ of every sampled token's probability, per arm;
- Fig. 3's correct-direction ratio per interval: among A > 0 tokens, the fraction whose π rose.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from reproduce.probe_setup import sample_batch
from reproduce.probes import choose_lr, gradient, sample_tokens, sgd_update, token_grad_norms

EDGES = (0.25, 0.5, 0.75)
N_BINS = len(EDGES) + 1


def _bins(p: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(p, torch.tensor(EDGES, dtype=p.dtype), right=True)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else math.nan


def probe_batch(subject, seed: int, lr: float | None, per_bin: int) -> dict:
    """Every Fig. 1 / Fig. 3 number of one probe batch (``lr`` None: chosen on this batch)."""
    trainer = subject.trainer
    sb = sample_batch(subject, seed)
    m = sb.loss_mask.bool()
    p_old = sb.old_logp.detach().double().exp()
    which = _bins(p_old)
    adv = sb.advantages.detach().double()
    full = choose_lr(trainer, sb) if lr is None else sgd_update(trainer, sb, lr)
    arms = {"full": full,
            "low": sgd_update(trainer, sb, full.lr, active=m & (which == 0)),
            "high": sgd_update(trainer, sb, full.lr, active=m & (which == N_BINS - 1))}
    dp = {k: (u.new_logp.double().exp() - p_old)[m] for k, u in arms.items()}
    rose = arms["full"].new_logp.double() > sb.old_logp.double()
    out = {"seed": seed, "lr": full.lr, "responses": sb.size, "tokens": int(m.sum()),
           "ratio": {k: u.ratio for k, u in arms.items()},
           "dprob_norm": {k: float(v.norm()) for k, v in dp.items()},
           "cos_to_full": {k: _cos(dp[k], dp["full"]) for k in ("low", "high")},
           "bin_tokens": [int((m & (which == k)).sum()) for k in range(N_BINS)],
           "bin_dprob": {k: [_mean((u.new_logp.double().exp() - p_old)[m & (which == b)]) for b in range(N_BINS)]
                         for k, u in arms.items()},
           "pos_right_frac": [_frac(rose[m & (which == b) & (adv > 0)]) for b in range(N_BINS)]}
    # the reference code's "gradient norm of a group": the global norm of the interval-masked loss
    out["group_grad_norm"] = [_grad_norm(trainer, sb, m & (which == b)) for b in range(N_BINS)]
    gen = torch.Generator().manual_seed(seed)
    rows, cols, bins = sample_tokens(m, p_old, EDGES, per_bin, gen)
    g = token_grad_norms(trainer, sb, rows, cols)
    pi = p_old[rows, cols]
    a = adv[rows, cols].abs()
    out["token"] = {"p": pi.tolist(), "grad_logp": g.tolist(), "abs_adv": a.tolist(), "bin": bins.tolist()}
    loss_norm = (a * g).numpy()
    out["bin_token_grad"] = [_mean_np(loss_norm[bins.numpy() == b]) for b in range(N_BINS)]
    fit = stats.linregress((1 - pi).numpy(), g.numpy()) if len(g) > 2 else None
    out["fit"] = {"slope": fit.slope, "intercept": fit.intercept, "r2": fit.rvalue ** 2} if fit else {}
    return out


def _grad_norm(trainer, sb, active) -> float:
    if not bool(active.any()):
        return math.nan
    _, g = gradient(trainer, sb, active)
    return math.sqrt(sum(float((x.double() ** 2).sum()) for x in g))


def _mean(t: torch.Tensor) -> float:
    return float(t.mean()) if t.numel() else math.nan


def _frac(t: torch.Tensor) -> float:
    return float(t.double().mean()) if t.numel() else math.nan


def _mean_np(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else math.nan


def run_probe(subject, plan, log=print, per_bin: int = 64) -> dict:
    """Every probe batch of the plan, each at the lr chosen on it (its arms share it)."""
    batches = []
    for s in plan.probe_seeds:
        b = probe_batch(subject, s, None, per_bin)
        lr = b["lr"]
        log(f"lopti probe seed {s}: lr {lr:.3g}, first-order ratio {b['ratio']['full']:.2f}, "
            f"token grad low/high {b['bin_token_grad'][0]:.3g}/{b['bin_token_grad'][-1]:.3g}")
        batches.append(b)
    return {"edges": list(EDGES), "batches": batches}
