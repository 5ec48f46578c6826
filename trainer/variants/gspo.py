"""GSPO (Zheng et al. 2025, arXiv 2507.18071): the importance ratio of a whole response, clipped per
response (docs/algorithms.md §1.3)."""

from __future__ import annotations

import torch

from trainer.registry import Loss, Needs, register_loss
from trainer.token_loss import TokenLoss, clipped_surrogate, sequence_log_ratio


def gspo_loss(logp, old_logp, adv, mask, cfg, *, group_ids=None, surrogate=clipped_surrogate) -> TokenLoss:
    """Sequence ratio s_i clipped per sequence; written token-wise as sg(s_i)·π/sg(π) so the
    gradient is s_i·∇ℓ_{i,t} per token (GSPO-token form; equals GSPO with seq-mean-token-mean)."""
    log_s = sequence_log_ratio(logp, old_logp, mask).detach()
    tok = surrogate(logp - logp.detach() + log_s.unsqueeze(-1), adv, cfg)
    return tok._replace(seq_weight=torch.exp(log_s))


register_loss(
    Loss("gspo", gspo_loss, "Sequence-level ratio, clipped per response (GSPO).", needs=Needs(sequence_ratio=True))
)
