"""Per-token log-probs (and entropy) of completion tokens under a causal LM."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class TokenStats(NamedTuple):
    logp: torch.Tensor  # [B,T] log π(y_t | x, y_<t) of the tempered distribution
    entropy: Optional[torch.Tensor] = None  # [B,T] entropy of that distribution, if asked
    hidden: Optional[torch.Tensor] = None  # [B,T,d] final (post-norm) hidden state predicting y_t, if asked
    logits: Optional[torch.Tensor] = None  # [B,T,V] tempered logits predicting y_t, if asked


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them, so π_old matches sampling."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def completion_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_len: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    with_hidden: bool = False,
) -> TokenStats:
    """``with_hidden`` also returns the last layer's hidden states (HF's last ``hidden_states``
    entry, after the final norm: the LM head's input) and the tempered logits, for NTHR."""
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
        output_hidden_states=with_hidden,
    )
    # logits at position t predict token t+1: completion tokens are predicted from prompt_len-1 on
    logits = out.logits[:, prompt_len - 1 : -1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-softmax in fp32 for half-precision models
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = logits.log_softmax(-1)
    targets = input_ids[:, prompt_len:].unsqueeze(-1)
    logp = log_probs.gather(-1, targets).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
    if not with_hidden:
        return TokenStats(logp, entropy)
    hidden = out.hidden_states[-1][:, prompt_len - 1 : -1].float()
    return TokenStats(logp, entropy, hidden, logits)
