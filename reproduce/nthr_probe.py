"""The NTHR paper's single-update Δ(x) probe (Sec. 5.3, Fig. 4; Eq. 2).

Per probe batch of the warm-start policy (dynamic sampling on: every group mixed), three token
advantage tensors on the SAME batch, each one SGD step from the same θ at the same lr:

- ``grpo``: the group-relative advantage on every token;
- ``nthr``: NTHR's (β = 1, η = 0 as in Sec. 5.3: the selected negative tokens get advantage 0);
- ``random``: GRPO+Random, per negative response as many of its tokens as NTHR selected there,
  drawn uniformly, set to 0.

    Δ(x) = (1/N⁺) Σ_{i correct} [ln π_θ'(y_i|x) − ln π_θ(y_i|x)]        per prompt x

A prompt is lazy when Δ(x) ≤ 0 (the correct responses' likelihood did not rise).
"""
from __future__ import annotations

import dataclasses

import torch

from reproduce.probe_setup import sample_batch
from reproduce.probes import choose_lr, sgd_update


def random_like(selected: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per row, as many tokens as ``selected`` holds there, drawn uniformly from the row's mask."""
    out = torch.zeros_like(selected)
    for r in range(selected.shape[0]):
        k = int(selected[r].sum())
        if k:
            cols = mask[r].nonzero().flatten()
            out[r, cols[torch.randperm(len(cols), generator=generator)[:k]]] = True
    return out


def per_prompt_delta(old_logp, new_logp, mask, correct, group_ids) -> tuple[list[int], list[float]]:
    """(prompt ids, Δ(x)) of every group with at least one correct response."""
    seq = ((new_logp.double() - old_logp.double()) * mask).sum(-1)
    ids, deltas = [], []
    for g in group_ids.unique().tolist():
        sel = (group_ids == g) & correct
        if bool(sel.any()):
            ids.append(int(g))
            deltas.append(float(seq[sel].mean()))
    return ids, deltas


def probe_batch(subject, seed: int, lr: float | None) -> dict:
    trainer = subject.trainer
    sb = sample_batch(subject, seed)
    mask = sb.loss_mask.bool()
    grpo_adv = torch.where(mask, sb.seq_advantages.unsqueeze(-1).expand_as(sb.advantages), 0.0)
    nthr_adv = torch.where(mask, sb.advantages, 0.0)
    selected = mask & (grpo_adv < 0) & (nthr_adv == 0)
    gen = torch.Generator().manual_seed(seed)
    rnd = random_like(selected, mask, gen)
    random_adv = torch.where(rnd, 0.0, grpo_adv)
    arms = {"grpo": grpo_adv, "nthr": nthr_adv, "random": random_adv}
    first = dataclasses.replace(sb, advantages=grpo_adv)
    base = choose_lr(trainer, first) if lr is None else sgd_update(trainer, first, lr)
    out = {"seed": seed, "lr": base.lr, "responses": sb.size, "selected_frac_of_negative":
           float(selected.sum()) / max(float((mask & (grpo_adv < 0)).sum()), 1.0), "ratio": {}, "delta": {}}
    for name, adv in arms.items():
        u = base if name == "grpo" else sgd_update(trainer, dataclasses.replace(sb, advantages=adv), base.lr)
        ids, d = per_prompt_delta(sb.old_logp, u.new_logp, sb.loss_mask, sb.correct, sb.group_ids)
        out["ratio"][name] = u.ratio
        out["delta"][name] = d
        out["prompts"] = ids
    return out


def run_probe(subject, plan, log=print) -> dict:
    """Every probe batch of the plan, each at the lr chosen on its GRPO step (its arms share it)."""
    batches = []
    for s in plan.probe_seeds:
        b = probe_batch(subject, s, None)
        lr = b["lr"]
        n = len(b["prompts"])
        mean = {k: sum(v) / n for k, v in b["delta"].items()} if n else {}
        log(f"nthr probe seed {s}: lr {lr:.3g}, {n} prompts, mean Δ(x) "
            + ", ".join(f"{k} {v:.3g}" for k, v in mean.items()))
        batches.append(b)
    return {"batches": batches}
