"""Rollouts with Hugging Face ``generate`` on the training model itself (CPU default)."""

from __future__ import annotations

from typing import Optional

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from trainer.rollout.base import RolloutBatch, SamplingParams, pad_completion


class HFRollout:
    def __init__(self, model, tokenizer, device: torch.device, chunk_size: int = 512):
        self.model = model
        self.tok = tokenizer
        self.device = device
        self.chunk_size = chunk_size

    def sync_weights(self, model) -> None:
        self.model = model  # same parameters: nothing to copy

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams, step: Optional[int] = None) -> RolloutBatch:
        """Sample ``params.n`` completions per prompt; rows are grouped prompt by prompt."""
        prompts = [format_prompt(self.tok, p) for p in prompts]
        expanded = [p for p in prompts for _ in range(params.n)]
        group_ids = torch.arange(len(prompts)).repeat_interleave(params.n)
        enc = self.tok(expanded, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tok.pad_token_id,
            eos_token_id=self.tok.eos_token_id,
        )
        if params.greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        was_training = self.model.training
        self.model.eval()
        outs, logps = [], []
        for start in range(0, len(expanded), self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            recorder = SampledLogprobs(params.temperature) if params.logprobs and not params.greedy else None
            extra = {"logits_processor": LogitsProcessorList([recorder])} if recorder is not None else {}
            seq = self.model.generate(input_ids=enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl],
                                      **kwargs, **extra)
            outs.append(seq)
            if recorder is not None:
                logps.append(recorder.finish(seq))
        self.model.train(was_training)
        width = max(o.shape[1] for o in outs)
        seqs = torch.cat(
            [torch.nn.functional.pad(o, (0, width - o.shape[1]), value=self.tok.pad_token_id) for o in outs]
        )
        prompt_len = enc["input_ids"].shape[1]
        completion = seqs[:, prompt_len:]
        rollout_logp = None
        if logps:
            rollout_logp = torch.cat([pad_completion(lp, width - prompt_len) for lp in logps])
        completion_mask, truncated = completion_mask_from_eos(completion, self.tok.eos_token_id)
        attention_mask = torch.cat([enc["attention_mask"], completion_mask], dim=1)
        shown = completion * completion_mask + self.tok.pad_token_id * (1 - completion_mask)
        texts = self.tok.batch_decode(shown, skip_special_tokens=True)
        return RolloutBatch(
            input_ids=seqs,
            attention_mask=attention_mask,
            completion_mask=completion_mask,
            prompt_len=prompt_len,
            completions=texts,
            truncated=truncated,
            group_ids=group_ids,
            rollout_logp=None if rollout_logp is None else rollout_logp * completion_mask,
        )


class SampledLogprobs(LogitsProcessor):
    """Records log π(y_t) of each sampled token during ``generate``, at no extra forward.

    Custom processors run before the sampling warpers (temperature, top-k, top-p), so ``scores`` are
    the model's raw logits; ``log_softmax(scores / T)`` is the tempered π the trainer recomputes.
    The token drawn from step t's scores is only known at step t+1 (or, for the last one, after
    ``generate`` returns: ``finish``); one [B, V] tensor is kept at a time.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self._prev: torch.Tensor | None = None
        self._out: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prev is not None:
            self._out.append(self._prev.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self._prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, T] log-probs of the T generated tokens of ``sequences`` (as returned by generate)."""
        if self._prev is not None:
            self._out.append(self._prev.gather(-1, sequences[:, -1:]).squeeze(-1))
            self._prev = None
        if not self._out:
            return sequences.new_zeros((sequences.shape[0], 0), dtype=torch.float32)
        return torch.stack(self._out, dim=-1)


def format_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model was trained to see it: wrapped in the tokenizer's chat template as a
    user turn (with the assistant's generation prompt) when the checkpoint ships one, else as is."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def completion_mask_from_eos(completion: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [B,T] covering tokens up to and including the first EOS; truncated = no EOS at all."""
    is_eos = completion == eos_id
    after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
    mask = (~after_eos).long()
    return mask, ~is_eos.any(-1)
