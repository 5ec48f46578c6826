"""Rollouts with Hugging Face ``generate`` on the training model itself (CPU default)."""

from __future__ import annotations

import torch

from trainer.rollout.base import RolloutBatch, SamplingParams


class HFRollout:
    def __init__(self, model, tokenizer, device: torch.device, chunk_size: int = 512):
        self.model = model
        self.tok = tokenizer
        self.device = device
        self.chunk_size = chunk_size

    def sync_weights(self, model) -> None:
        self.model = model  # same parameters: nothing to copy

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch:
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
        outs = []
        for start in range(0, len(expanded), self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            outs.append(
                self.model.generate(input_ids=enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl], **kwargs)
            )
        self.model.train(was_training)
        width = max(o.shape[1] for o in outs)
        seqs = torch.cat(
            [torch.nn.functional.pad(o, (0, width - o.shape[1]), value=self.tok.pad_token_id) for o in outs]
        )
        prompt_len = enc["input_ids"].shape[1]
        completion = seqs[:, prompt_len:]
        completion_mask, truncated = completion_mask_from_eos(completion, self.tok.eos_token_id)
        attention_mask = torch.cat([enc["attention_mask"], completion_mask], dim=1)
        texts = self.tok.batch_decode(completion * completion_mask + self.tok.pad_token_id * (1 - completion_mask), skip_special_tokens=True)
        return RolloutBatch(
            input_ids=seqs,
            attention_mask=attention_mask,
            completion_mask=completion_mask,
            prompt_len=prompt_len,
            completions=texts,
            truncated=truncated,
            group_ids=group_ids,
        )


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
