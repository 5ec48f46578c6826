"""NTHR, negative token hidden reward (Deng et al. 2025, arXiv 2505.18830, Eq. 7-9, Algorithm 1):
scale the advantage of negative tokens whose influence on the group's correct responses exceeds a
threshold τ, against lazy likelihood displacement (docs/algorithms.md §4).

The scores need the π_old forward's final hidden states and logits: the trainer hands each chunk
of whole groups of that forward to ``observe`` (``NTHRScores.of``), so the [B,T,V] logits never
outlive their chunk, and ``apply`` scales the selected tokens once the advantages exist. Shapes: N
responses of one group (B of a batch), T completion positions, d hidden width, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from types import SimpleNamespace
from typing import Any, Union

import torch

from trainer.knobs import knob
from trainer.registry import Feature, Needs, TokenTransform, register_feature

ETA_SCHEDULES = ("auto", "p", "one_minus_p")
_LSE_CHUNK_ELEMENTS = 1 << 26  # rows of [rows, V] logits converted to float at a time (≈256 MiB of float32)


class NTHRVocab(str, Enum):
    group_union = "group_union"  # V*: tokens occurring in the group's responses (paper App. 7.4)
    full = "full"  # the whole vocabulary (reference for tests; O(|V|·d))


def _eta_error(eta) -> str | None:
    if isinstance(eta, str):
        return None if eta in ETA_SCHEDULES else f"must be a number in [0, 1] or a schedule: {', '.join(ETA_SCHEDULES)}"
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        return (
            f"must be in [0, 1] (η < 1 reduces the penalty, 1 = plain GRPO) or a schedule: {', '.join(ETA_SCHEDULES)}"
        )
    return None


def _beta_error(beta) -> str | None:
    return "must be a finite number or -inf" if math.isnan(beta) or beta == math.inf else None


@dataclass
class NTHRConfig:
    enabled: bool = knob(
        False, "Scale the advantage of negative tokens whose NTHR score exceeds τ (mixed groups only)."
    )
    beta: float = knob(
        1.0, "NTHR β: τ = β·min_i s̄⁺_i; -inf scales every negative token (ablation {-inf,0,0.1,1}).",
        valid=_beta_error, allow_inf=True
    )
    eta: Any = knob(
        "auto",
        "NTHR η: a number in [0,1] (1 = no change) or a schedule of the group success rate p: "
        "auto = 2|0.5−p|, p, one_minus_p.",
        valid=_eta_error,
    )
    vocab: NTHRVocab = knob(NTHRVocab.group_union, "Vocabulary of the prediction errors g = e_y − π.")


# ---------------------------------------------------------------- one group (pure)
def nthr_eta(eta: Union[float, str], p: float) -> float:
    """η of a group with success rate p = N⁺/N: a constant in [0, 1] (1 = plain GRPO), or a schedule
    (Table 5): ``auto`` = 2|0.5 − p| (the paper's default), ``p``, ``one_minus_p`` = 1 − p."""
    if eta == "auto":
        return 2.0 * abs(0.5 - p)
    if eta == "p":
        return p
    if eta == "one_minus_p":
        return 1.0 - p
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
    hidden, logits, tokens, mask, correct, *, beta: float = 1.0, vocab: Union[str, NTHRVocab] = "group_union"
) -> tuple[torch.Tensor, float]:
    """NTHR scores [N,T] and threshold τ for ONE group of N responses (Eq. 7, 9).

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


def nthr_advantages(advantages, scores, tau: float, mask, correct, eta) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective penalization of ONE group (Eq. 8, Algorithm 1): (adv [N,T], selected [N,T]).

    Selected = tokens of negative responses (``correct`` False) on the mask with score > τ (strict;
    every negative token when τ = −inf, none when τ is nan); their advantage becomes η·A. Positive
    responses and unselected tokens keep A. ``eta`` is a constant in [0, 1] or a schedule of the
    group's success rate p = N⁺/N (see ``nthr_eta``). A non-mixed group is returned unchanged.
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    adv = adv.expand(scores.shape[0], scores.shape[1]).clone()
    correct = correct.bool()
    selected = torch.zeros_like(scores, dtype=torch.bool)
    if not _is_mixed(correct) or math.isnan(tau):
        return adv, selected
    neg_tok = (~correct).unsqueeze(-1) & mask.bool()
    selected = neg_tok if tau == -math.inf else neg_tok & (scores > tau)
    scale = nthr_eta(eta, float(correct.sum()) / correct.numel())
    return torch.where(selected, adv * scale, adv), selected


# ---------------------------------------------------------------- a batch, chunk by chunk
@dataclass
class NTHRScores:
    """Scores and τ of every group of a batch, taken during the π_old forward; ``apply`` later."""

    scores: torch.Tensor  # [B,T]
    taus: list[float]  # one per group, in group order (nan: not a mixed group)
    rows: list[torch.Tensor]  # row indices of each group
    mask: torch.Tensor  # [B,T]
    correct: torch.Tensor  # [B] bool
    eta: object  # float or schedule name

    @classmethod
    def of(cls, stats, tokens, mask, correct, group_ids, cfg: NTHRConfig) -> "NTHRScores":
        """Scores of a chunk whose groups are contiguous rows (as sampled): groups are slices (views,
        no copies), and groups without both correct and incorrect responses are skipped outright.
        ``stats`` holds the chunk's ``hidden`` [b,T,d] and ``logits`` [b,T,V]."""
        scores = torch.zeros_like(stats.logp)
        taus, rows = [], []
        _, counts = torch.unique_consecutive(group_ids, return_counts=True)
        start = 0
        for c in counts.tolist():
            sl = slice(start, start + c)
            rows.append(torch.arange(start, start + c))
            start += c
            ok = correct[sl]
            if bool(ok.all()) or not bool(ok.any()):
                taus.append(math.nan)  # not a mixed group: NTHR is undefined there
                continue
            s, tau = nthr_scores(
                stats.hidden[sl], stats.logits[sl], tokens[sl], mask[sl], ok, beta=cfg.beta, vocab=cfg.vocab
            )
            scores[sl] = s.to(scores.dtype)
            taus.append(float(tau))
        return cls(scores, taus, rows, mask, correct, cfg.eta)

    @classmethod
    def concat(cls, parts: list["NTHRScores"]) -> "NTHRScores":
        offsets = [0]
        for p in parts[:-1]:
            offsets.append(offsets[-1] + p.scores.shape[0])
        return cls(
            scores=torch.cat([p.scores for p in parts]),
            taus=[t for p in parts for t in p.taus],
            rows=[r + off for p, off in zip(parts, offsets) for r in p.rows],
            mask=torch.cat([p.mask for p in parts]),
            correct=torch.cat([p.correct for p in parts]),
            eta=parts[0].eta,
        )

    def apply(self, advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Advantages [B,T] with selected negative tokens scaled by η, and the selection's statistics:
        ``nthr/selected_frac`` (selected / negative tokens of mixed groups; 0 when there are none),
        ``nthr/mixed_groups``, and ``nthr/tau_mean`` (mean finite τ; absent when there is none)."""
        out = advantages.clone()
        selected = negatives = 0.0
        taus = []
        for idx, tau in zip(self.rows, self.taus):
            if math.isnan(tau):
                continue  # not a mixed group: NTHR is undefined there and leaves it alone
            adv, sel = nthr_advantages(
                advantages[idx], self.scores[idx], tau, self.mask[idx], self.correct[idx], self.eta
            )
            out[idx] = adv.to(out.dtype)
            selected += float(sel.sum())
            negatives += float((self.mask[idx] * (~self.correct[idx]).unsqueeze(-1)).sum())
            if math.isfinite(tau):
                taus.append(tau)
        stats = {
            "nthr/selected_frac": selected / negatives if negatives else 0.0,
            "nthr/mixed_groups": float(sum(not math.isnan(t) for t in self.taus)),
        }
        if taus:
            stats["nthr/tau_mean"] = sum(taus) / len(taus)
        return out, stats


def nthr_batch(hidden, logits, tokens, mask, correct, group_ids, advantages, cfg: NTHRConfig):
    """NTHR over a whole batch in one call (the trainer's computation, for use in your own trainer):
    (adv [B,T], stats as in ``NTHRScores.apply``). Inputs as in ``nthr_scores`` with a batch
    dimension B; ``group_ids`` [B] names each response's prompt (rows of a group need not be
    contiguous); ``advantages`` [B] or [B,T]. ``cfg.enabled`` is the caller's switch and is not read."""
    order = torch.sort(group_ids, stable=True).indices
    inverse = torch.argsort(order)
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    adv = adv.expand(mask.shape[0], mask.shape[1])
    stats = SimpleNamespace(logp=adv[order].float(), hidden=hidden[order], logits=logits[order])
    scored = NTHRScores.of(stats, tokens[order], mask[order], correct.bool()[order], group_ids[order], cfg)
    out, summary = scored.apply(adv[order].clone())
    return out[inverse], summary


# ---------------------------------------------------------------- registration
def _observe(chunk, section) -> NTHRScores:
    return NTHRScores.of(chunk.stats, chunk.tokens, chunk.mask, chunk.correct, chunk.group_ids, section)


def _apply(adv, ctx, section):
    return ctx.observed.apply(adv)


def _check(cfg) -> list[str]:
    t = cfg.task
    if t.format_reward > 0 and t.correct_threshold is None:
        return [
            f"task.correct_threshold=null: task.format_reward={t.format_reward} makes rewards non-binary, "
            "and NTHR needs to know which responses are correct; set a reward threshold (e.g. 1.0)"
        ]
    return []


def _warn(cfg) -> list[str]:
    nthr = cfg.algorithm.nthr
    if nthr.beta == -math.inf and nthr.eta == 0:
        return ["algorithm.nthr.beta=-inf with eta=0 zeroes every negative advantage (the Pos-Only baseline)"]
    return []


register_feature(
    Feature(
        "nthr",
        NTHRConfig,
        TokenTransform(_apply, observe=_observe, combine=NTHRScores.concat, order=10),
        "Negative token hidden reward (NTHR paper Eq. 7-9).",
        needs=Needs(old_forward=True),
        check=_check,
        warn=_warn,
    )
)
