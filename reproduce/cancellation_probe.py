"""The cancellation paper's single-update measurements (its §2–3, Fig. 1c/d, Eq. 5–10).

Per probe batch of the warm-start policy, one SGD step from the same θ at the same lr for:

- ``grpo``: every rollout's advantage (Fig. 1c);
- ``positive``: only A > 0 rollouts learn (Fig. 1d; measured on the FULL batch, as the paper does).

Each sampled token is boosted when Δ = ln π' − ln π > τ, suppressed when Δ < −τ, with τ 1% of the
GRPO step's mean |Δ| (the paper's τ is not in its text). Token coupling, Eq. 7–8, exactly for the
LM head: K_kl = (h_k·h_l)·D_kl, D_kl = 1[y_k = y_l] − p_k(y_l) − p_l(y_k) + p_k·p_l, on a sample of
tokens, by pair class (same token with both π < 0.5, same token otherwise, different tokens).
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reproduce.probe_setup import sample_batch
from reproduce.probes import choose_lr, sgd_update
from trainer.diagnostics import token_flip_stats
from trainer.logprobs import completion_logprobs

TAU_FRAC = 0.01
LOW_CONF = 0.5


def flip_summary(old_logp, new_logp, mask, seq_adv, tau: float) -> dict:
    m = mask.bool()
    d = token_flip_stats(old_logp, new_logp, mask, seq_adv, threshold=tau)
    delta = (new_logp.double() - old_logp.double()).abs()
    out = {k.removeprefix("diag/flip_"): v for k, v in d.items()}
    for name, sel in (("pos", seq_adv > 0), ("neg", seq_adv < 0)):
        toks = m & sel.unsqueeze(-1)
        out[f"{name}_abs_delta"] = float(delta[toks].mean()) if bool(toks.any()) else math.nan
    return out


def coupling(trainer, sb, n_tokens: int, generator: torch.Generator) -> dict:
    """Mean |K_kl| per pair class over a uniform sample of response tokens (diagonal excluded)."""
    policy, b = trainer.policy, sb.rollout
    picks = sb.loss_mask.bool().nonzero()
    picks = picks[torch.randperm(len(picks), generator=generator)[:n_tokens]]
    rows = picks[:, 0].unique()
    with torch.no_grad():
        st = completion_logprobs(policy, b.input_ids[rows], b.attention_mask[rows], b.prompt_len,
                                 trainer.cfg.rollout.temperature, with_hidden=True)
    where = {int(r): i for i, r in enumerate(rows.tolist())}
    ri = torch.tensor([where[int(r)] for r in picks[:, 0]])
    h = st.hidden[ri, picks[:, 1]].double()
    p = st.logits[ri, picks[:, 1]].double().softmax(-1)
    y = b.completion_ids[picks[:, 0], picks[:, 1]]
    py = p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    same = y[:, None] == y[None, :]
    d = same.double() - p[:, y] - p[:, y].T + p @ p.T  # p[k, y_l] = p_k(y_l)
    k = (h @ h.T) * d
    off = ~torch.eye(len(y), dtype=torch.bool)
    low = (py[:, None] < LOW_CONF) & (py[None, :] < LOW_CONF)
    classes = {"same_low": same & low & off, "same_other": same & ~low & off, "different": ~same & off}
    absk = k.abs()
    total = float(absk[off].sum())
    return {"tokens": len(y),
            **{f"mean_abs_{c}": float(absk[sel].mean()) if bool(sel.any()) else math.nan for c, sel in classes.items()},
            **{f"pairs_{c}": int(sel.sum()) for c, sel in classes.items()},
            **{f"mass_{c}": float(absk[sel].sum()) / total if total else math.nan for c, sel in classes.items()}}


def probe_batch(subject, seed: int, n_tokens: int) -> dict:
    trainer = subject.trainer
    sb = sample_batch(subject, seed)
    grpo = choose_lr(trainer, sb)
    pos_adv = torch.where(sb.advantages > 0, sb.advantages, torch.zeros_like(sb.advantages))
    positive = sgd_update(trainer, dataclasses.replace(sb, advantages=pos_adv), grpo.lr)
    m = sb.loss_mask.bool()
    tau = TAU_FRAC * float((grpo.new_logp.double() - sb.old_logp.double()).abs()[m].mean())
    out = {"seed": seed, "lr": grpo.lr, "tau": tau, "ratio": {"grpo": grpo.ratio, "positive": positive.ratio}}
    for name, u in (("grpo", grpo), ("positive", positive)):
        out[name] = flip_summary(sb.old_logp, u.new_logp, sb.loss_mask, sb.seq_advantages, tau)
    out["coupling"] = coupling(trainer, sb, n_tokens, torch.Generator().manual_seed(seed))
    return out


def run_probe(subject, plan, log=print, n_tokens: int = 400) -> dict:
    batches = []
    for s in plan.probe_seeds:
        b = probe_batch(subject, s, n_tokens)
        g = b["grpo"]
        log(f"cancellation probe seed {s}: lr {b['lr']:.3g}, against-sign {g.get('against_sign_frac', math.nan):.2f}, "
            f"boost pos/neg {g.get('pos_boost_frac', math.nan):.2f}/{g.get('neg_boost_frac', math.nan):.2f}")
        batches.append(b)
    return {"batches": batches}
