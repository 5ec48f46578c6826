"""Per-token advantage weights computed once per rollout batch (ALGORITHMS.md §2-§4).

- AR, Advantage Reweighting (Lopti paper Eq. 4): Â = (α·π_old(y_t) + 1−α)·A.
- Lopti split (Lopti paper §4): low = π_old(y_t) < η, high = π_old(y_t) ≥ η.
- NTHR, Negative Token Hidden Reward (NTHR paper Eq. 7-9, Algorithm 1): scale the advantage of
  negative tokens whose influence on the group's correct responses exceeds a threshold τ.

Pure functions of old-policy tensors: nothing here takes a gradient or touches a model. Shapes:
B responses, T completion positions, d hidden width, V vocabulary; ``mask`` is 1 on response tokens.
"""

from __future__ import annotations

import math
from typing import Union

import torch

from trainer.config import NTHR_ETA_SCHEDULES, NTHRConfig, NTHRVocab

# Rows of [rows, V] logits converted to float at a time (≈256 MiB of float32 at any V).
_LSE_CHUNK_ELEMENTS = 1 << 26


def _per_token(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B] broadcast over tokens, or A [B,T] as is, as a fresh [B,T] tensor."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    return advantages.expand(like.shape[0], like.shape[1]).clone()


# ---------------------------------------------------------------- AR (Lopti paper §3)
def advantage_reweight(advantages: torch.Tensor, old_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Â_{i,t} = [α·π_old(y_{i,t}) + (1 − α)]·A_{i,t} (Lopti paper Eq. 4), [B,T].

    ``advantages`` is [B] (broadcast over tokens) or [B,T]; ``old_logp`` [B,T] is the rollout
    policy's log-prob of the sampled token (temperature-scaled, as in the reference code). The
    weight is a constant: no gradient flows into ``old_logp``. Both signs of A are scaled; α = 0
    returns A itself (GRPO), bit for bit.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"algorithm.adv_reweight.alpha={alpha}: must be in [0, 1]")
    adv = _per_token(advantages, old_logp)
    if alpha == 0.0:
        return adv
    weight = alpha * old_logp.detach().exp() + (1.0 - alpha)
    return weight.to(adv.dtype) * adv


# ---------------------------------------------------------------- Lopti (Lopti paper §4)
def lopti_masks(old_logp: torch.Tensor, mask: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split response tokens by π_old(y_t) = exp(old_logp): (low [B,T], high [B,T]) bool masks.

    low = π_old < η, high = π_old ≥ η (a token exactly at η is high, as in the reference code's
    ``exp(old_log_probs) < η``); padding is in neither, so low | high == mask and low & high == ∅.
    """
    if not 0.0 < eta < 1.0:
        raise ValueError(f"algorithm.lopti.eta={eta}: must be in (0, 1)")
    m = mask.bool()
    prob = old_logp.detach().exp()
    low = (prob < eta) & m
    return low, m & ~low


# ---------------------------------------------------------------- NTHR (NTHR paper §5)
def nthr_eta(eta: Union[float, str], p: float) -> float:
    """η of a group with success rate p = N⁺/N: a constant in [0, 1] (1 = plain GRPO), or a schedule (Table 5):
    ``auto`` = 2|0.5 − p| (the paper's default), ``p``, ``one_minus_p`` = 1 − p."""
    if isinstance(eta, str):
        if eta == "auto":
            return 2.0 * abs(0.5 - p)
        if eta == "p":
            return p
        if eta == "one_minus_p":
            return 1.0 - p
        raise ValueError(f"algorithm.nthr.eta={eta!r}: must be a number in [0, 1] or one of {list(NTHR_ETA_SCHEDULES)}")
    if isinstance(eta, bool) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"algorithm.nthr.eta={eta!r}: must be in [0, 1] or a schedule {list(NTHR_ETA_SCHEDULES)}")
    return float(eta)


def _is_mixed(correct: torch.Tensor) -> bool:
    return bool(correct.any()) and bool((~correct).any())


def _logsumexp_rows(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """logsumexp over the vocabulary [N,T], converting a bounded number of rows to ``dtype`` at a
    time, so no full-size float copy of the [N,T,V] logits is ever made."""
    flat = logits.reshape(-1, logits.shape[-1])
    step = max(1, _LSE_CHUNK_ELEMENTS // max(1, flat.shape[-1]))
    out = [torch.logsumexp(flat[s : s + step].to(dtype), dim=-1) for s in range(0, flat.shape[0], step)]
    return torch.cat(out).reshape(logits.shape[:-1])


def nthr_scores(
    hidden: torch.Tensor,
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    *,
    beta: float = 1.0,
    vocab: Union[str, NTHRVocab] = "group_union",
) -> tuple[torch.Tensor, float]:
    """NTHR scores [N,T] and threshold τ for ONE group of N responses (NTHR paper Eq. 7, 9).

    ``hidden`` [N,T,d] is the final-layer (post-norm) hidden state at the position predicting
    ``tokens[:, t]``; ``logits`` [N,T,V] the rollout policy's logits there, already
    temperature-scaled; ``correct`` [N] bool marks the positive responses. With the prediction
    error g = e_y − softmax(logits) restricted to V* (the token ids at the group's response
    positions, ``vocab="group_union"``; not renormalized) or to the whole vocabulary (``"full"``):

        M⁺ = Σ_{positive tokens} g⁺ h⁺ᵀ   (|V*|×d; App. 7.4 "sum first")
        score_t = gᵀ M⁺ h = Σ_{positive tokens k} ⟨g_k, g⟩⟨h_k, h⟩   (Eq. 7; no O(T²) double sum)

    For a negative token this is s⁻; for a positive token it is the per-token term of Eq. 9.
    τ = β·min_i s̄⁺_i, s̄⁺_i the mean score over positive response i's tokens (self-pairs
    included, Eq. 9); β = −inf gives τ = −inf. Padding scores 0. Positive responses without
    response tokens are not anchors. Computed in float32 (float64 if an input is float64).

    A group that is not mixed (no correct or no incorrect response) has no anchors or nothing to
    select: it returns zeros and τ = nan. So does a group whose positives have no response tokens.
    """
    n, t, _ = hidden.shape
    if vocab not in {v.value for v in NTHRVocab}:
        raise ValueError(f"algorithm.nthr.vocab={vocab!r}: must be one of {[v.value for v in NTHRVocab]}")
    vocab = NTHRVocab(vocab)
    m = mask.bool()
    correct = correct.bool()
    dtype = torch.float64 if torch.float64 in (hidden.dtype, logits.dtype) else torch.float32
    scores = torch.zeros(n, t, dtype=dtype, device=hidden.device)
    pos_tok = correct.unsqueeze(-1) & m
    if not _is_mixed(correct) or not bool(pos_tok.any()):
        return scores, math.nan

    y = tokens[m]  # [n_tok] ids at response positions, row-major
    if vocab == NTHRVocab.group_union:
        vstar, y_col = torch.unique(y, sorted=True, return_inverse=True)  # V*, and y's column in it
    else:
        vstar, y_col = torch.arange(logits.shape[-1], device=y.device), y
    lse = _logsumexp_rows(logits, dtype)[m]  # [n_tok]
    # π on V* only, from its own columns: the softmax over the full vocabulary is never formed
    prob = (logits.index_select(-1, vstar)[m].to(dtype) - lse.unsqueeze(-1)).exp()  # [n_tok, |V*|]
    g = -prob
    g[torch.arange(g.shape[0], device=g.device), y_col] += 1.0  # g = e_y − π on V*
    h = hidden[m].to(dtype)  # [n_tok, d]

    is_pos = pos_tok[m]  # [n_tok]
    big_m = g[is_pos].T @ h[is_pos]  # M⁺ [|V*|, d]
    token_scores = ((g @ big_m) * h).sum(-1)  # gᵀ M⁺ h per token
    scores[m] = token_scores

    if beta == -math.inf:
        return scores, -math.inf
    lengths = pos_tok.sum(-1)
    anchors = correct & (lengths > 0)
    s_bar = scores.sum(-1)[anchors] / lengths[anchors]  # s̄⁺_i (Eq. 9); padding contributes 0
    return scores, float(beta * s_bar.min())


def nthr_advantages(
    advantages: torch.Tensor,
    scores: torch.Tensor,
    tau: float,
    mask: torch.Tensor,
    correct: torch.Tensor,
    eta: Union[float, str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective penalization of ONE group (NTHR paper Eq. 8, Algorithm 1): (adv [N,T], selected [N,T]).

    Selected = tokens of negative responses (``correct`` False) on the mask with score > τ (strict;
    every negative token when τ = −inf, none when τ is nan); their advantage becomes η·A. Positive
    responses and unselected tokens keep A. ``eta`` is a constant in [0, 1) or a schedule of the
    group's success rate p = N⁺/N (see ``nthr_eta``). A non-mixed group is returned unchanged.
    """
    adv = _per_token(advantages, scores)
    correct = correct.bool()
    selected = torch.zeros_like(scores, dtype=torch.bool)
    if not _is_mixed(correct) or math.isnan(tau):
        return adv, selected
    neg_tok = (~correct).unsqueeze(-1) & mask.bool()
    selected = neg_tok if tau == -math.inf else neg_tok & (scores > tau)
    scale = nthr_eta(eta, float(correct.sum()) / correct.numel())
    return torch.where(selected, adv * scale, adv), selected


def nthr_batch(
    hidden: torch.Tensor,
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    group_ids: torch.Tensor,
    advantages: torch.Tensor,
    cfg: NTHRConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """NTHR over a rollout batch: ``nthr_scores`` then ``nthr_advantages`` per mixed group.

    Inputs as in ``nthr_scores`` with a batch dimension B and ``group_ids`` [B] naming each
    response's prompt; ``advantages`` [B] or [B,T]. Returns adv [B,T] (non-mixed groups unchanged)
    and stats: ``nthr/selected_frac`` (selected / negative response tokens of mixed groups),
    ``nthr/tau_mean`` (mean finite τ over mixed groups), ``nthr/mixed_groups``; the first two are
    nan when undefined. ``cfg.enabled`` is the caller's switch and is not read here. A trainer
    short of memory calls the two per-group functions itself, one group's tensors at a time.
    """
    adv = _per_token(advantages, mask)
    m = mask.bool()
    correct = correct.bool()
    selected_total, negative_total, taus, mixed = 0, 0, [], 0
    for gid in torch.unique(group_ids):
        idx = (group_ids == gid).nonzero(as_tuple=True)[0]
        c = correct[idx]
        if not _is_mixed(c):
            continue
        mixed += 1
        scores, tau = nthr_scores(
            hidden[idx], logits[idx], tokens[idx], m[idx], c, beta=cfg.beta, vocab=cfg.vocab
        )
        adv_g, sel = nthr_advantages(adv[idx], scores, tau, m[idx], c, cfg.eta)
        adv[idx] = adv_g.to(adv.dtype)
        selected_total += int(sel.sum())
        negative_total += int(((~c).unsqueeze(-1) & m[idx]).sum())
        if math.isfinite(tau):
            taus.append(tau)
    stats = {
        "nthr/selected_frac": selected_total / negative_total if negative_total else math.nan,
        "nthr/tau_mean": sum(taus) / len(taus) if taus else math.nan,
        "nthr/mixed_groups": float(mixed),
    }
    return adv, stats
