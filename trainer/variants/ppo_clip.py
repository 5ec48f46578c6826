"""The token-ratio policy loss: GRPO (arXiv 2402.03300), DAPO (arXiv 2503.14476), Dr.GRPO (arXiv
2503.20783) differ only in its clip range and in the aggregation around it (docs/algorithms.md §1.2)."""

from __future__ import annotations

from trainer.registry import Loss, register_loss
from trainer.token_loss import TokenLoss, clipped_surrogate, masked_seq_mean


def ppo_clip_loss(logp, old_logp, adv, mask, cfg, *, group_ids=None, surrogate=clipped_surrogate) -> TokenLoss:
    """Token-level ratio r_{i,t} = exp(ℓ − ℓ_old) through the surrogate (PPO's clip by default).

    Trajectory weight for Asym: the token-mean ratio of each response."""
    tok = surrogate(logp - old_logp, adv, cfg)
    return tok._replace(seq_weight=masked_seq_mean(tok.ratio, mask))


register_loss(Loss("ppo_clip", ppo_clip_loss, "Token-level ratio with PPO's clip (GRPO, DAPO, Dr.GRPO).",
                   label="grpo"))
