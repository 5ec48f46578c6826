"""NTHR scores taken during the π_old forward, applied to advantages once those exist.

The trainer's old-policy pass runs in chunks of whole groups; each chunk's hidden states and
logits are turned into per-token scores and one τ per group right away (so the [B,T,V] logits
never outlive their chunk), and ``apply`` scales the selected negative tokens later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainer.config import NTHRConfig
from trainer.token_weights import nthr_advantages, nthr_scores


@dataclass
class NTHRScores:
    scores: torch.Tensor  # [B,T]
    taus: list[float]  # one per group, in group order (nan: not a mixed group)
    rows: list[torch.Tensor]  # row indices of each group
    mask: torch.Tensor  # [B,T]
    correct: torch.Tensor  # [B] bool
    eta: object  # float or schedule name

    @classmethod
    def of(cls, stats, tokens, mask, correct, group_ids, cfg: NTHRConfig) -> "NTHRScores":
        """Scores of a chunk whose groups are contiguous rows (as sampled): groups are slices (views,
        no copies), and groups without both correct and incorrect responses are skipped outright."""
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
            s, tau = nthr_scores(stats.hidden[sl], stats.logits[sl], tokens[sl], mask[sl], ok,
                                 beta=cfg.beta, vocab=cfg.vocab.value)
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
        """Advantages [B,T] with selected negative tokens scaled by η; selection statistics."""
        out = advantages.clone()
        selected = negatives = 0.0
        taus = []
        for idx, tau in zip(self.rows, self.taus):
            if math.isnan(tau):
                continue  # not a mixed group: NTHR is undefined there and leaves it alone
            adv, sel = nthr_advantages(advantages[idx], self.scores[idx], tau, self.mask[idx], self.correct[idx], self.eta)
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
