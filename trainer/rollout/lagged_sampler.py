"""The two executors of a lagged rollout's command stream (``trainer.rollout.lagged``): a worker
process (``ProcessSampler``) and the trainer's own process (``InlineSampler``). Both run the same
``Executor`` on the same commands, so they return the same batches; only the worker overlaps them
with the trainer's update.

Commands, in order: ``("weights", version, packed)`` loads a version of the policy, ``("job", step,
prompts, params, seed)`` samples one step's batch with the weights last loaded. Weights travel as one
flat byte tensor (one shared-memory handle per version, not one per parameter); batches come back
pickled in-band, so one sent just before the worker died is still readable.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import time
import traceback
from collections import deque
from pathlib import Path

import torch

from trainer.rollout.base import RolloutBatch, SamplingParams

__all__ = ["Executor", "InlineSampler", "ProcessSampler", "RolloutWorkerDied", "pack", "unpack", "vllm_engine"]


class RolloutWorkerDied(RuntimeError):
    """The rollout worker ended before it sent a batch the trainer waits for; the message says why."""


def pack(weights: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
    """(one uint8 tensor holding every tensor's bytes, [(name, shape, dtype)]) — ``unpack`` inverts it."""
    spec = [(k, tuple(v.shape), v.dtype) for k, v in weights.items()]
    flat = torch.cat([v.contiguous().reshape(-1).view(torch.uint8) for v in weights.values()])
    return flat, spec


def unpack(flat: torch.Tensor, spec: list) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for name, shape, dtype in spec:
        n = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        out[name] = flat[at : at + n].view(dtype).reshape(shape)
        at += n
    return out


class Executor:
    """A copy of the policy, loaded from ``model_dir`` and then from each version it is sent, sampling
    under each job's own seed at ``threads`` torch threads: with HF ``generate`` on its own module, or
    with a vLLM engine (``engine``, a ``VLLMRollout``), whose weights each version replaces through
    vLLM's weight reload."""

    def __init__(self, model_dir: str | Path, threads: int, device: torch.device, engine=None):
        self.device, self.threads = device, threads
        self.version: int | None = None
        if engine is not None:
            self.policy, self.rollout = None, engine
            return
        from trainer.modeling import load_policy, load_tokenizer
        from trainer.rollout.hf import HFRollout

        self.policy = load_policy(model_dir).to(device)
        self.rollout = HFRollout(self.policy, load_tokenizer(model_dir), device)

    def load(self, version: int, weights: dict[str, torch.Tensor]) -> None:
        if self.policy is None:
            self.rollout.load_state(weights)
        else:
            dtype = next(iter(weights.values())).dtype
            if dtype.is_floating_point and dtype != next(self.policy.parameters()).dtype:
                self.policy.to(dtype)  # sample in the trainer's precision, not the checkpoint's
            self.policy.load_state_dict(weights)
        self.version = version

    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> tuple[RolloutBatch, float]:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)  # vLLM's request seed is drawn from this stream too
                batch = self.rollout.generate(prompts, params)
        finally:
            torch.set_num_threads(before)
        return batch, time.perf_counter() - t0


def vllm_engine(model_dir, device: torch.device, seed: int, **kwargs):
    """A vLLM engine started from ``model_dir`` (``trainer.rollout.vllm_engine``)."""
    from trainer.modeling import load_tokenizer
    from trainer.rollout.vllm_engine import VLLMRollout

    return VLLMRollout(model_dir, load_tokenizer(model_dir), device, seed=seed, **kwargs)


class InlineSampler:
    """Runs the commands in the trainer's process when a batch is asked for: no overlap, the reference.
    With ``engine`` (the trainer's own vLLM engine) it samples there: one engine, whose weights the
    lagged rollout puts back before an eval (``shares_engine``)."""

    def __init__(self, model_dir, threads: int, device: torch.device, engine=None):
        self.executor = Executor(model_dir, threads, device, engine)
        self.shares_engine = engine is not None
        self.pending: deque = deque()
        self.loaded: tuple | None = None  # (version, weights) last loaded
        self.lent = False  # the shared engine was given other weights since

    def engine_lent(self) -> None:
        """The lagged rollout put other weights in the shared engine (for an eval): reload before a job."""
        self.lent = self.shares_engine

    def send_weights(self, version: int, weights: dict) -> None:
        self.pending.append(("weights", version, weights))

    def submit(self, step: int, prompts: list[str], params: SamplingParams, seed: int) -> None:
        self.pending.append(("job", step, prompts, params, seed))

    def result(self, step: int) -> tuple[RolloutBatch, dict]:
        while self.pending:
            cmd = self.pending.popleft()
            if cmd[0] == "weights":
                self.executor.load(cmd[1], cmd[2])
                self.loaded, self.lent = (cmd[1], cmd[2]), False
                continue
            _, s, prompts, params, seed = cmd
            if s != step:
                raise RuntimeError(f"lagged rollout: asked for step {step}'s batch, the next job is step {s}")
            if self.lent:
                self.executor.load(*self.loaded)
                self.lent = False
            batch, gen_s = self.executor.sample(prompts, params, seed)
            return batch, {"version": self.executor.version, "gen_s": gen_s, "idle_s": 0.0}
        raise RuntimeError(f"lagged rollout: step {step}'s batch was never submitted")

    def close(self) -> None:
        self.pending.clear()


class ProcessSampler:
    """A spawned worker process executes the commands as they come, so it samples the next steps'
    batches while the trainer updates. It ignores stop signals (the trainer ends it), exits when the
    trainer is gone, and reports any failure; a worker that died is an error with its cause, never a
    hang."""

    shares_engine = False

    def __init__(self, model_dir, threads: int, poll_s: float = 0.2, vllm: dict | None = None,
                 device: str = "cpu"):
        """``vllm``: the keyword arguments of ``vllm_engine`` to sample with vLLM (CPU); None: HF
        generate on ``device`` (the trainer's: on a GPU the two processes share it)."""
        ctx = torch.multiprocessing.get_context("spawn")
        self.commands, self.results, self.poll_s = ctx.Queue(), ctx.Queue(), poll_s
        self.proc = ctx.Process(target=worker_main, args=(str(model_dir), threads, self.commands, self.results,
                                                           os.getpid(), vllm, device),
                                name="grpolab-rollout", daemon=True)
        self.proc.start()

    def engine_lent(self) -> None:
        """Its engine is its own: nothing to reload."""

    def send_weights(self, version: int, weights: dict) -> None:
        flat, spec = pack(weights)
        self.commands.put(("weights", version, flat.share_memory_(), spec))

    def submit(self, step: int, prompts: list[str], params: SamplingParams, seed: int) -> None:
        self.commands.put(("job", step, prompts, params, seed))

    def result(self, step: int) -> tuple[RolloutBatch, dict]:
        while True:
            try:
                msg = self.results.get(timeout=self.poll_s)
            except queue.Empty:
                if not self.proc.is_alive():
                    raise RolloutWorkerDied(self._death(step)) from None
                continue
            if msg[0] == "error":  # (what it was doing, the exception's first line, its traceback)
                err = RolloutWorkerDied(f"the rollout worker failed {msg[1]}: {msg[2]}")
                err.worker_traceback = msg[3]
                raise err
            _, s, batch, info = msg
            if s != step:
                raise RuntimeError(f"lagged rollout: the worker sent step {s}'s batch, step {step}'s was due")
            return pickle.loads(batch), info

    def _death(self, step: int) -> str:
        code = self.proc.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"the rollout worker (pid {self.proc.pid}) died ({how}) before sending step {step}'s batch"

    def close(self) -> None:
        if self.proc.is_alive():
            self.commands.put(("stop",))
            self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=10)
        for q in (self.commands, self.results):
            q.cancel_join_thread()
            q.close()


def worker_main(model_dir: str, threads: int, commands, results, parent: int, vllm: dict | None = None,
                device: str = "cpu") -> None:
    """The worker process: load the policy, then execute commands until told to stop or orphaned."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C or a preemption is the trainer's to handle
    doing = f"loading the policy from {model_dir}"
    try:
        dev = torch.device(device)
        engine = None if vllm is None else vllm_engine(model_dir, dev, **vllm)
        executor = Executor(model_dir, threads, dev, engine)
        idle = 0.0
        while True:
            t0 = time.perf_counter()
            cmd = _next(commands, parent)
            idle += time.perf_counter() - t0
            if cmd is None or cmd[0] == "stop":
                return
            if cmd[0] == "weights":
                doing = f"loading weights version {cmd[1]}"
                executor.load(cmd[1], unpack(cmd[2], cmd[3]))
                continue
            _, step, prompts, params, seed = cmd
            doing = f"sampling step {step}'s batch"
            batch, gen_s = executor.sample(prompts, params, seed)
            # pickled in-band: a batch must stay readable if the worker dies right after sending it
            results.put(("batch", step, pickle.dumps(batch), {"version": executor.version, "gen_s": gen_s,
                                                               "idle_s": idle}))
            idle = 0.0
    except BaseException as e:  # everything goes back to the trainer, which fails the run with it
        first = (str(e).strip().splitlines() or [""])[0][:300]
        results.put(("error", doing, f"{type(e).__name__}: {first}", traceback.format_exc(limit=6)))


def _next(commands, parent: int):
    """The next command; None once the trainer's process is gone (the worker must not outlive it)."""
    while True:
        try:
            return commands.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return None
