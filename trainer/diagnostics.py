"""Update diagnostics the papers measure (docs/algorithms.md §7).

Pure tensor functions, no model access. The trainer calls them once per logged update with the
log-probs of the SAME rollout batch before the update (``old_logp`` [B,T], π_old at rollout
temperature) and after the whole update on that batch (``new_logp`` [B,T], a no-grad forward),
the response mask [B,T] (1/True on response tokens) and the advantages actually used in the loss
([B], broadcast to tokens, or [B,T]).

Conventions shared by every function here:

- Padding never counts: positions with ``mask == 0`` are replaced before any arithmetic, so
  garbage, ``inf`` or ``nan`` there cannot leak into a statistic.
- Return values are flat ``dict[str, float]`` with ``diag/`` keys, ready for the run record.
- NaN-free by omission: a ratio or mean whose denominator is empty (no mixed prompt, no A>0 token
  in a bin, …) is left OUT of the dict, never reported as NaN or as a made-up 0. The counts
  that are those denominators (``*_prompts``, ``*_tokens``) are always present, so a reader can
  tell "not measured this step" from "measured 0". Downstream, a missing key reads as NaN in
  pandas and drops out of means over steps instead of biasing them.
- Sums are taken in float64.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


# ---------------------------------------------------------------- helpers
def _check_pair(old_logp: torch.Tensor, new_logp: torch.Tensor, mask: torch.Tensor) -> None:
    if old_logp.dim() != 2 or old_logp.shape != new_logp.shape or old_logp.shape != mask.shape:
        raise ValueError(
            f"old_logp {tuple(old_logp.shape)}, new_logp {tuple(new_logp.shape)} and mask "
            f"{tuple(mask.shape)} must all be [B, T] with the same shape"
        )


def _masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float64 copy with padded positions set to 0 (``where``, not ``*``: inf·0 would be NaN)."""
    v = values.detach().to(torch.float64)
    return torch.where(mask, v, torch.zeros_like(v))


def _token_advantages(advantages: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    adv = advantages.detach().to(torch.float64)
    if adv.dim() == 1 and adv.shape[0] == shape[0]:
        return adv.unsqueeze(-1).expand(shape)
    if adv.shape == shape:
        return adv
    raise ValueError(f"advantages {tuple(adv.shape)} must be [B] or [B, T] with [B, T] = {tuple(shape)}")


def _logp_delta(old_logp, new_logp, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(bool mask, Δ = new − old in float64, 0 at padding)."""
    _check_pair(old_logp, new_logp, mask)
    m = mask.bool()
    return m, _masked(new_logp, m) - _masked(old_logp, m)


def _put_frac(out: dict, key: str, num: torch.Tensor, den: torch.Tensor) -> None:
    """``out[key] = num/den`` unless the denominator is empty (then the key is omitted)."""
    d = float(den)
    if d > 0:
        out[key] = float(num) / d


# ---------------------------------------------------------------- LLD (NTHR)
def lld_stats(
    old_logp: torch.Tensor,
    new_logp: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    group_ids: torch.Tensor,
) -> dict[str, float]:
    """Lazy likelihood displacement of correct responses across one update (NTHR, Eq. 2–3).

    Per mixed prompt x (≥1 correct and ≥1 incorrect response in its group), the paper's Eq. (2):

        Δ(x) = (1/N⁺) Σ_{i ∈ correct} [ln π_new(y_i|x) − ln π_old(y_i|x)],
        ln π(y|x) = Σ_t ln π(y_t | x, y_<t)     (sequence log-likelihood, NOT divided by |y|)

    The paper does not length-normalize, so
    ``diag/lld_mean`` and ``diag/lld_lazy_frac`` are Eq. (2) as printed. The length-normalized
    variant, Δ̄(x) = (1/N⁺) Σ_i (Σ_t Δℓ_{i,t})/|y_i|, is reported beside it under ``*_per_token``
    keys (its sign can differ when correct responses differ in length).

    A prompt is "lazy" when Δ(x) ≤ 0 (Def. 4.1, Eq. 3, with ε = 0: the correct responses did not
    gain likelihood). All-correct and all-incorrect groups are excluded. A correct response with
    no response tokens under ``mask`` has no likelihood to move and is left out of N⁺; a mixed
    prompt left with no such response is excluded.

    Args:
        correct: bool [B], per-response correctness (e.g. ``rewards >= 1.0``).
        group_ids: [B], the prompt each response belongs to.

    Keys: ``diag/lld_prompts`` (count of prompts measured; always present), and when it is > 0
    ``diag/lld_mean``, ``diag/lld_lazy_frac``, ``diag/lld_mean_per_token``,
    ``diag/lld_lazy_frac_per_token``.
    """
    m, delta = _logp_delta(old_logp, new_logp, mask)
    B = m.shape[0]
    if correct.dtype != torch.bool or correct.shape != (B,):
        raise ValueError(
            f"correct must be a bool tensor of shape ({B},), got {correct.dtype} {tuple(correct.shape)}; "
            "pass e.g. rewards >= 1.0"
        )
    if group_ids.shape != (B,):
        raise ValueError(f"group_ids must have shape ({B},), got {tuple(group_ids.shape)}")
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if B else 0

    def per_group(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, values.to(torch.float64))

    lengths = m.sum(-1)
    seq_delta = delta.sum(-1)  # Σ_t (new − old): Eq. (2)'s sequence log-likelihood change
    tok_delta = seq_delta / lengths.clamp(min=1)
    n_correct = per_group(correct)
    n_incorrect = per_group(~correct)
    anchor = correct & (lengths > 0)
    n_anchor = per_group(anchor)
    measured = (n_correct > 0) & (n_incorrect > 0) & (n_anchor > 0)

    n = int(measured.sum())
    out = {"diag/lld_prompts": float(n)}
    if n == 0:
        return out
    zero = torch.zeros_like(seq_delta)
    for suffix, d in (("", seq_delta), ("_per_token", tok_delta)):
        per_prompt = (per_group(torch.where(anchor, d, zero)) / n_anchor.clamp(min=1))[measured]
        out[f"diag/lld_mean{suffix}"] = float(per_prompt.mean())
        out[f"diag/lld_lazy_frac{suffix}"] = float((per_prompt <= 0).to(torch.float64).mean())
    return out


# ---------------------------------------------------------------- token flips (cancellation)
def token_flip_stats(
    old_logp: torch.Tensor,
    new_logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    threshold: float = 0.0,
) -> dict[str, float]:
    """Boosted / suppressed token fractions across one update (cancellation paper, §2, App. C, Eq. 16).

    Per response token, Δ_{i,t} = ln π_new(y_{i,t}) − ln π_old(y_{i,t}) (log-prob, as Eq. 16);
    the token is boosted if Δ > τ, suppressed if Δ < −τ, stable otherwise (τ = ``threshold`` ≥ 0;
    the paper's value is lost from the text). Ratios are reported separately for
    positive-advantage and negative-advantage rollouts and for the whole batch, as in App. C /
    Fig. 9. With [B] advantages the split is by rollout, as in the paper; with [B,T] advantages
    each token goes by the sign of its own advantage. Tokens with A = 0 (e.g. uniform groups)
    belong to neither split but count in the ``all`` ratios.

    Keys (``s`` ∈ {pos, neg, all}): ``diag/flip_{s}_boost_frac``, ``diag/flip_{s}_suppress_frac``
    (omitted when the split has no tokens), the counts ``diag/flip_{s}_tokens`` (always present),
    and ``diag/flip_against_sign_frac`` = (pos suppressed + neg boosted) / (pos + neg tokens),
    the "token flipping" share that moved against its advantage sign (paper: "nearly half").
    """
    if not (threshold >= 0.0 and math.isfinite(threshold)):
        raise ValueError(f"threshold={threshold!r}: must be a finite number >= 0 (log-prob units)")
    m, delta = _logp_delta(old_logp, new_logp, mask)
    adv = _token_advantages(advantages, m.shape)
    boost = m & (delta > threshold)
    suppress = m & (delta < -threshold)
    splits = {"pos": m & (adv > 0), "neg": m & (adv < 0), "all": m}
    out: dict[str, float] = {}
    for name, sel in splits.items():
        n = sel.sum()
        out[f"diag/flip_{name}_tokens"] = float(n)
        _put_frac(out, f"diag/flip_{name}_boost_frac", (boost & sel).sum(), n)
        _put_frac(out, f"diag/flip_{name}_suppress_frac", (suppress & sel).sum(), n)
    against = (suppress & splits["pos"]).sum() + (boost & splits["neg"]).sum()
    _put_frac(out, "diag/flip_against_sign_frac", against, splits["pos"].sum() + splits["neg"].sum())
    return out


# ---------------------------------------------------------------- probability bins (Lopti)
def bin_ranges(edges: Sequence[float]) -> list[tuple[float, float]]:
    """[(lo, hi)] of each π_old bin for inner ``edges``: bin k is lo ≤ π < hi (the last is lo ≤ π ≤ 1).

    ``[0.25, 0.5, 0.75]`` → [(0, .25), (.25, .5), (.5, .75), (.75, 1)]. Left-closed like Lopti's
    split (a token with π = η is "high"), so bin k ≥ 1 starts exactly at ``edges[k-1]``.
    """
    e = [float(x) for x in edges]
    if any(not 0.0 < x < 1.0 for x in e) or any(a >= b for a, b in zip(e, e[1:])):
        raise ValueError(f"diagnostics.prob_bins={list(edges)}: must be strictly increasing, each in (0, 1)")
    bounds = [0.0, *e, 1.0]
    return list(zip(bounds[:-1], bounds[1:]))


def prob_bin_stats(
    old_logp: torch.Tensor,
    new_logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    edges: Sequence[float],
) -> dict[str, float]:
    """Per π_old-bin statistics of one update (Lopti §2.4 Fig. 1, §2.5 Fig. 3, Prop. 4.2 Eq. 3).

    Tokens are binned by π_old(y_t) = exp(old_logp) (rollout temperature, as AR/Lopti use it) into
    ``len(edges) + 1`` fixed-interval bins, bin k = ``bin_ranges(edges)[k]`` = [e_{k−1}, e_k) with
    e_{−1} = 0 and the last bin closed at 1. Fixed intervals, not data quantiles, as in the
    reference code's ``mask_prob_interval``. Per bin k:

    - ``diag/bin{k}_tokens``: response tokens in the bin (always present);
    - ``diag/bin{k}_token_frac``: that count over all response tokens;
    - ``diag/bin{k}_abs_adv``: mean |A| (Fig. 1b);
    - ``diag/bin{k}_grad_proxy``: mean (1 − π_old)·|A|, the token's gradient-norm scale from
      Prop. 4.2 (‖δ_ℓ‖ ∝ |w|·(1 − π), Eq. 3) with w ≈ A at ratio 1;
    - ``diag/bin{k}_dprob``: mean π_new − π_old (Fig. 1c);
    - ``diag/bin{k}_pos_right_frac``: among tokens with A > 0, the fraction whose probability
      rose (new_logp > old_logp strictly; Fig. 3's "correct update direction");
    - ``diag/bin{k}_neg_right_frac``: among tokens with A < 0, the fraction whose probability fell;
    - ``diag/bin{k}_pos_tokens``, ``diag/bin{k}_neg_tokens``: those denominators (always present).

    Means and fractions over an empty set are omitted (module docstring).
    """
    ranges = bin_ranges(edges)
    m, delta = _logp_delta(old_logp, new_logp, mask)
    adv = _token_advantages(advantages, m.shape)
    adv = torch.where(m, adv, torch.zeros_like(adv))
    p_old = torch.exp(_masked(old_logp, m))
    p_new = torch.exp(_masked(new_logp, m))
    boundaries = torch.tensor([hi for _, hi in ranges[:-1]], dtype=torch.float64)
    which = torch.bucketize(p_old, boundaries, right=True)  # right=True: e_{k−1} ≤ π < e_k
    abs_adv = adv.abs()
    total = m.sum()
    out: dict[str, float] = {}
    for k in range(len(ranges)):
        sel = m & (which == k)
        n = sel.sum()
        pos, neg = sel & (adv > 0), sel & (adv < 0)
        pre = f"diag/bin{k}_"
        out[pre + "tokens"] = float(n)
        out[pre + "pos_tokens"] = float(pos.sum())
        out[pre + "neg_tokens"] = float(neg.sum())
        _put_frac(out, pre + "token_frac", n, total)
        _put_frac(out, pre + "abs_adv", abs_adv[sel].sum(), n)
        _put_frac(out, pre + "grad_proxy", ((1.0 - p_old) * abs_adv)[sel].sum(), n)
        _put_frac(out, pre + "dprob", (p_new - p_old)[sel].sum(), n)
        _put_frac(out, pre + "pos_right_frac", (pos & (delta > 0)).sum(), pos.sum())
        _put_frac(out, pre + "neg_right_frac", (neg & (delta < 0)).sum(), neg.sum())
    return out


# ---------------------------------------------------------------- curve smoothness (DFPO)
def jitter2(values: Sequence[float]) -> float:
    """DFPO's second-order jitter of a training curve m_1..m_T (Eq. 20):

        Jitter₂(m) = 1/(T − 2) · Σ_{t=1}^{T−2} |m_{t+2} − 2 m_{t+1} + m_t|

    Zero for any constant or linear curve; lower is smoother (Prediction 2, Eq. 21). ``values``
    is one logged series in step order (e.g. a run's ``train/reward``).

    Raises ValueError for fewer than 3 points (no second difference exists; a 0 would read as
    "perfectly smooth") or a non-finite point; an analysis table should show such a run as missing.
    """
    m = [float(v) for v in values]
    if len(m) < 3:
        raise ValueError(f"jitter2 needs at least 3 points, got {len(m)}")
    bad = [i for i, v in enumerate(m) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"jitter2: non-finite value {m[bad[0]]} at index {bad[0]}")
    return sum(abs(m[t + 2] - 2.0 * m[t + 1] + m[t]) for t in range(len(m) - 2)) / (len(m) - 2)
