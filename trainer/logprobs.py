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
    entry, after the final norm: the LM head's input) and the tempered logits, for NTHR.

    Columns that are padding in every row (the left padding of the prompts, the right padding of
    the completions, both sized for the whole batch) are cut before the forward and the outputs
    padded back with zeros (positions the loss mask excludes): the model sees the same tokens at
    the same positions, for less work when the rows of a micro-batch are shorter than the batch's.
    """
    lo, hi = content_span(attention_mask, prompt_len)
    width = input_ids.shape[1]
    if lo > 0 or hi < width:
        st = _completion_logprobs(model, input_ids[:, lo:hi], attention_mask[:, lo:hi], prompt_len - lo,
                                  temperature, with_entropy, with_hidden)
        return TokenStats(*(None if x is None else _pad_right(x, width - prompt_len) for x in st))
    return _completion_logprobs(model, input_ids, attention_mask, prompt_len, temperature, with_entropy, with_hidden)


def content_span(attention_mask: torch.Tensor, prompt_len: int) -> tuple[int, int]:
    """[lo, hi): the columns some row attends to, keeping the last prompt column (it predicts the
    first completion token) and at least one completion column."""
    used = attention_mask.bool().any(0).nonzero().flatten()
    if used.numel() == 0:
        return 0, attention_mask.shape[1]
    lo = min(int(used[0]), prompt_len - 1)
    hi = max(int(used[-1]) + 1, prompt_len + 1)
    return max(lo, 0), min(hi, attention_mask.shape[1])


def _pad_right(x: torch.Tensor, t: int) -> torch.Tensor:
    """[B, T', ...] → [B, t, ...] with zeros after column T'."""
    if x.shape[1] == t:
        return x
    pad = x.new_zeros((x.shape[0], t - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def _completion_logprobs(model, input_ids, attention_mask, prompt_len, temperature, with_entropy, with_hidden):
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
