"""Asynchronous rollouts in lockstep (``rollout.async_steps`` = k): the batch trained at step t is
sampled from the policy after step t − 1 − k (the warm start while t − 1 − k ≤ 0), never from
whichever weights happen to be newest, so a run is a function of (seed, k) and k = 1 is exactly
one-step off-policy GRPO.

The schedule. When the trainer asks for step t's batch, its policy holds θ_{t−1}; the wrapper keeps
a copy as version t − 1, then sends, in order, for each job s in (last submitted, min(t + k, last
step)]: the weights version max(s − 1 − k, 0) when it differs from the last one sent, and the job
(s, its prompts, its sampling seed). A sampler that executes that stream in order therefore samples
job s from version s − 1 − k, and while the trainer updates θ_{t−1} → θ_t it is already sampling
steps t + 1 … t + k. Two samplers execute the stream: ``ProcessSampler`` (a worker process, HF
``generate`` on CPU: the overlap) and ``InlineSampler`` (in the trainer's process when the batch is
asked for: the same batches, no overlap; the reference the tests compare the worker with).

Resume: a checkpoint after step t holds the versions t − k … t − 1 (``state_dict``); the in-flight
batches t + 1 … t + k are sampled again from them, so a resumed run equals an uninterrupted one.
Eval batches (``step=None``) come from the trainer's current weights, synchronously, through the
synchronous backend (``inner``); a vLLM ``inner`` takes them only when an eval needs them, not after
every update. With vLLM the inline sampler samples in that same engine (one engine, as the
synchronous vLLM path has), loading each version through vLLM's weight reload; the worker process
starts its own engine.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Optional

import torch

from trainer.rollout.base import RolloutBatch, SamplingParams
from trainer.rollout.lagged_sampler import InlineSampler, ProcessSampler
from trainer.seeds import sampling_seed

__all__ = ["LaggedRollout", "build_lagged"]


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model``'s state (a version the sampler may need after the model moved on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class LaggedRollout:
    def __init__(self, inner, policy, sampler, k: int, seed: int, last_step: int,
                 prompts_at: Callable[[int], list[str]]):
        self.inner, self.policy, self.sampler = inner, policy, sampler
        self.k, self.seed, self.last_step, self.prompts_at = k, seed, last_step, prompts_at
        self.versions: dict[int, dict] = {}  # version -> weights a job still to send, or a resume, needs
        self.submitted: Optional[int] = None  # last job sent (None: nothing yet; set by the first step)
        self.sent: Optional[int] = None  # version the sampler holds
        self.eval_stale = False  # ``inner`` does not hold the current weights

    # ------------------------------------------------------------ the rollout interface
    def generate(self, prompts: list[str], params: SamplingParams, step: Optional[int] = None) -> RolloutBatch:
        if step is None:  # eval: the current weights
            if self.eval_stale:
                self.inner.sync_weights(self.policy)
                self.sampler.engine_lent()  # an engine shared with the sampler holds other weights now
                self.eval_stale = False
            return self.inner.generate(prompts, params)
        if self.submitted is None:
            self.submitted = step - 1
        if step - 1 not in self.versions:  # θ_{t−1}: the policy as it stands (a resume may have restored it)
            self.versions[step - 1] = weights_of(self.policy)
        params = replace(params, logprobs=True)  # the behaviour policy's log-probs, for staleness statistics
        for s in range(self.submitted + 1, min(step + self.k, self.last_step) + 1):
            v = self.version_for(s)
            if v != self.sent:
                self.sampler.send_weights(v, self.versions[v])
                self.sent = v
            self.sampler.submit(s, self.prompts_at(s), params, sampling_seed(self.seed, s))
            self.submitted = s
        t0 = time.perf_counter()
        batch, info = self.sampler.result(step)
        wait = time.perf_counter() - t0
        self.eval_stale |= self.sampler.shares_engine  # it sampled from an older version there
        for v in [v for v in self.versions if v < step - self.k]:  # neither a job to send nor a resume reads it
            del self.versions[v]
        busy = info["gen_s"] + info["idle_s"]
        batch.sampler_stats = {
            "async/staleness": float(step - 1 - info["version"]),
            "async/trainer_wait_s": wait,
            "async/sampler_idle_frac": info["idle_s"] / busy if busy > 0 else 0.0,
        }
        return batch

    def sync_weights(self, model) -> None:
        self.policy = model  # versions are copied from it when a step asks for its batch
        self.eval_stale = True  # ``inner`` takes the weights when an eval needs them

    def version_for(self, step: int) -> int:
        """The weights version (after that many steps) the batch of ``step`` is sampled from."""
        return max(step - 1 - self.k, 0)

    # ------------------------------------------------------------ resumable state
    def state_dict(self) -> dict:
        """The versions the batches still to be sampled after this checkpoint need, other than the
        checkpoint's own weights."""
        return {"versions": dict(self.versions)}

    def load_state_dict(self, state: Optional[dict]) -> None:
        self.versions.update((state or {}).get("versions", {}))

    def close(self) -> None:
        self.sampler.close()


def build_lagged(cfg, inner, policy, model_dir, prompts_at: Callable[[int], list[str]], device) -> LaggedRollout:
    """``rollout.async_steps`` = k ≥ 1 around ``inner`` (the synchronous backend, kept for eval)."""
    r = cfg.rollout
    vllm = r.backend.value == "vllm"
    if r.async_worker.value == "process":
        engine = dict(seed=cfg.seed, cpu_kv_cache_gib=r.vllm_cpu_kv_cache_gib) if vllm else None
        sampler = ProcessSampler(model_dir, r.async_threads, vllm=engine, device=str(device))
    else:
        sampler = InlineSampler(model_dir, r.async_threads, device, engine=inner if vllm else None)
    return LaggedRollout(inner, policy, sampler, r.async_steps, cfg.seed, cfg.train.steps, prompts_at)
