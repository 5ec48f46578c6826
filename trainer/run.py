"""A whole run: warm start, GRPO steps, periodic eval, and its run record.

``run_training`` is the job a launcher executes (locally or as a SLURM task): it decides how the
run begins (``trainer.run_start.begin``), then runs three phases around one ``RunState``:
``_prepare`` (model, engine, rollout, trainer; the warm-start eval or the checkpoint), ``_loop``
(the steps, their record, the stop and prune points) and ``_finalize`` (wall time, the last
summary, the tracker). No exception escapes without ``summary.json`` saying the status, the step
and the cause. While it runs, the summary names its ``host`` and ``pid`` and carries a ``heartbeat``
(rewritten at least every step), so a reader can tell a live run from a dead one
(``sweeps.status``).
"""

from __future__ import annotations

import functools
import os
import random
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from trainer import checkpoint, distributed
from trainer.engine import build_engine
from trainer.grpo import GRPOTrainer, NonFiniteLoss
from trainer.identity import config_hash, to_dict
from trainer.locks import RunBusy, try_run_lock
from trainer.modeling import load_policy, load_tokenizer
from trainer.progress import Eta, duration, progress_text
from trainer.rollout import build_rollout
from trainer.rollout.sharded import ShardedRollout
from trainer.run_record import EvalRow, Meta, RunRecord, RunStatus, Summary, prompt_id
from trainer.run_start import begin, process_age_s, resolve_device, start_ranks, write_rank_error
from trainer.sft import warm_start_dir
from trainer.tasks import build_task
from trainer.tracking import NullTracker, make_tracker, replay
from trainer.validation import validate

__all__ = ["PromptStream", "resolve_device", "run_training", "start_ranks"]


class PromptStream:
    """Epoch-wise shuffled prompts; position is a pure function of the step (resumable)."""

    def __init__(self, examples, per_step: int, seed: int):
        self.examples, self.per_step, self.seed = examples, per_step, seed

    @functools.lru_cache(maxsize=2)
    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def at(self, step: int):
        start = (step - 1) * self.per_step
        return [
            self.examples[self._order(epoch)[i]]
            for epoch, i in (divmod(pos, len(self.examples)) for pos in range(start, start + self.per_step))
        ]


@dataclass
class RunState:
    """What the phases of one run share."""

    cfg: Any
    record: RunRecord
    meta: Meta
    summary: Summary
    prior: Optional[checkpoint.TrainingState]
    main: bool
    log: Callable
    t_start: float
    wall_before: float = 0.0
    step: int = 0
    timing: dict = field(default_factory=dict)
    tracker: Any = field(default_factory=NullTracker)
    engine: Any = None
    trainer: Optional[GRPOTrainer] = None
    eval_set: list = field(default_factory=list)
    stream: Optional[PromptStream] = None

    @property
    def name(self) -> str:
        return self.meta.run_id

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.t_start


def run_training(
    cfg,
    run_dir: str | Path,
    meta: Meta | None = None,
    log: Callable = print,
    should_stop: Optional[Callable[[], bool]] = None,
    resume: bool = True,
    reporter: Optional[Callable[[int, float], bool]] = None,
) -> Summary:
    """Train one run and keep its record in ``run_dir``; return the final summary.

    With ``resume`` (the default) a run dir holding a checkpoint of the same config and seed
    continues from it, and one whose summary already says ``completed`` is returned as is.
    Otherwise the run starts from scratch and any previous record in ``run_dir`` is replaced.
    ``meta`` labels the run (sweep id, swept values; ``trainer.identity.run_meta``); without it the
    run is labelled by its directory name. ``should_stop`` is polled after every step: when it
    returns True the run checkpoints and returns with status ``preempted`` (a launcher requeues
    it). ``reporter(step, eval_accuracy) -> prune`` is asked at eval steps (``grpolab tune``).
    ``RunBusy`` (``trainer.locks``), before anything is written, when another process is writing
    ``run_dir``.
    """
    t_start = time.time()
    validate(cfg)
    main = start_ranks(cfg) == 0
    if not main:  # rank 0 logs and writes the record; the others only train
        log = _quiet
    record = RunRecord(run_dir, writable=main)
    lock = None
    if main:  # one writer per run dir: taken before the record is read, released after its last write
        try:
            lock = try_run_lock(record.dir)
        except RunBusy:
            lock = None
    if distributed.broadcast_object(main and lock is None):
        raise RunBusy(record.dir)
    try:
        return _run_locked(cfg, record, meta, log, should_stop, resume, reporter, main, t_start)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(cfg, record: RunRecord, meta, log, should_stop, resume, reporter, main: bool,
                t_start: float) -> Summary:
    start = distributed.broadcast_object(begin(cfg, record, resume, meta, log) if main else None)
    if start.done is not None:
        return start.done
    state = RunState(cfg, record, start.meta, start.summary, start.prior, main, log, t_start,
                     wall_before=float(start.summary.wall_time_s or 0.0), step=start.first_step - 1)
    age = process_age_s()
    state.timing["process_start_to_run_s"] = age - (time.time() - t_start) if age is not None else None
    state.summary.host, state.summary.pid = socket.gethostname(), os.getpid()
    nodes = distributed.all_gather_object(os.environ.get("SLURMD_NODENAME") or socket.gethostname())
    state.summary.nodes = nodes if len(nodes) > 1 else None
    _write_summary(state)
    try:
        _prepare(state)
        _write_summary(state)  # a heartbeat after the model load and the warm-start eval
        _loop(state, should_stop, reporter)
    except checkpoint.CorruptCheckpoint as e:
        state.summary.status, state.summary.error = RunStatus.failed, e.error(state.step)
        log(f"[{state.name}] FAILED: {state.summary.error['cause']}")
    except NonFiniteLoss as e:
        state.summary.status, state.summary.error = RunStatus.failed, {"step": e.step, "cause": e.cause}
        log(f"[{state.name}] FAILED: {e}")
    except Exception as e:
        state.summary.status = RunStatus.failed
        state.summary.error = {"step": state.step, "cause": f"{type(e).__name__}: {e}",
                               "traceback": traceback.format_exc(limit=8)}
        log(f"[{state.name}] FAILED at step {state.step}: {type(e).__name__}: {e}")
        if not main:  # rank 0 does not know
            write_rank_error(record.dir, state.summary.error)
    except BaseException as e:  # KeyboardInterrupt, SystemExit: preempted only if there is a checkpoint to resume
        ckpt = checkpoint.peek_step(record.dir)
        then = f"a re-run resumes from the checkpoint at step {ckpt}" if ckpt is not None else \
            "no checkpoint: a re-run starts afresh"
        state.summary.status = RunStatus.preempted if ckpt is not None else RunStatus.failed
        state.summary.error = {"step": state.step,
                               "cause": f"interrupted ({type(e).__name__}) during step {state.step + 1}; {then}"}
        raise
    finally:
        _finalize(state)
    return state.summary


def _quiet(*_args, **_kwargs) -> None:
    pass


# ---------------------------------------------------------------- phases
def _prepare(state: RunState) -> None:
    """Build everything the steps need; evaluate the warm start, or restore the checkpoint."""
    cfg, log = state.cfg, state.log
    if state.main:
        state.tracker = make_tracker(to_dict(cfg), state.record.dir, state.meta)
        if state.tracker.describe():
            log(f"[{state.name}] {state.tracker.describe()}")
        replay(state.record.dir, state.tracker)  # a resumed run: what the record holds and the tracker never got
    torch.set_num_threads(cfg.engine.threads or cfg.launcher.threads_per_job)
    device = resolve_device(cfg.engine.device)
    task = build_task(cfg.task)
    t_warm = time.time()
    init_dir = _warm_start_rank0_first(cfg, task, functools.partial(_phase, state), state.main)
    state.timing["warm_start_s"] = time.time() - t_warm
    t_load = time.time()
    policy = load_policy(init_dir).to(device)
    tok = load_tokenizer(init_dir)
    ref = None
    if cfg.algorithm.kl.coef > 0:
        ref = load_policy(init_dir).to(device).eval().requires_grad_(False)
    state.timing["model_load_s"] = time.time() - t_load
    _phase(state, f"model loaded in {state.timing['model_load_s']:.1f}s"
                  + ("; evaluating the warm start" if state.prior is None else "; restoring the checkpoint"))
    engine = build_engine(cfg.engine.backend.value, policy, cfg.optim, cfg.engine, **_engine_kwargs(cfg))
    policy = engine.module  # forwards go through the engine's wrapper (ZeRO-3 gathers parameters there)
    rollout = build_rollout(cfg.rollout.backend.value, policy, tok, engine.device, **_rollout_kwargs(cfg, init_dir))
    if cfg.rollout.shard_over_ranks and engine.world_size > 1:
        rollout = ShardedRollout(rollout, engine.rank, engine.world_size, engine.device)
    state.stream = stream = PromptStream(task.train, cfg.rollout.prompts_per_step, cfg.seed)
    if cfg.rollout.async_steps > 0:  # the next k batches are sampled from older weights, ahead of the update
        from trainer.rollout.lagged import build_lagged

        rollout = build_lagged(cfg, rollout, policy, init_dir, lambda s: [e.prompt for e in stream.at(s)],
                               engine.device)
    state.engine = engine
    state.trainer = GRPOTrainer(cfg, policy, ref, tok, engine, rollout, task)
    state.eval_set = task.eval[: cfg.train.eval_prompts] if cfg.train.eval_prompts else task.eval

    t_eval = time.time()
    summary = state.summary
    if state.prior is None:
        warm = _evaluate(state, 0)
        acc = warm["eval/accuracy"]
        state.record.append_metrics({"step": 0, **warm})
        state.tracker.log(warm, 0)
        summary.warmstart_eval_accuracy = summary.best_eval_accuracy = summary.final_eval_accuracy = acc
        _phase(state, f"warm start eval accuracy {acc:.3f}; training {cfg.train.steps} steps")
        if acc in (0.0, 1.0):
            every = "wrong" if acc == 0 else "right"
            _warn(state, f"warm start eval accuracy {acc:.3f}: every group is likely all-{every}, so GRPO's "
                         "advantages are 0 and nothing learns; lengthen the warm start (sft.steps), check "
                         "rollout.max_new_tokens against the task's answers, or pick an easier task")
        state.timing["warm_eval_s"] = time.time() - t_eval
    else:
        t_ckpt = time.time()
        checkpoint.load(state.record.dir, engine)
        state.trainer.load_state_dict(state.prior.buffer)
        if state.prior.rollout is not None:  # the versions the in-flight batches were sampled from
            rollout.load_state_dict(state.prior.rollout)
        rollout.sync_weights(policy)
        state.timing["checkpoint_load_s"] = time.time() - t_ckpt
        state.timing["warm_eval_s"] = 0.0
        _phase(state, f"resumed from the checkpoint at step {state.prior.step} (attempt {summary.attempt})")
    state.timing["run_to_first_step_s"] = time.time() - state.t_start
    summary.timing = state.timing


def _loop(state: RunState, should_stop, reporter) -> None:
    """The steps; each one's metrics are in the record before the next begins."""
    cfg, summary, log = state.cfg, state.summary, state.log
    every = cfg.train.checkpoint_every
    if state.step < cfg.train.steps and _stop_requested(state, should_stop):  # a signal while preparing
        return
    eta, first = Eta(cfg.train.steps, state.step), state.step + 1
    for step in range(first, cfg.train.steps + 1):
        state.step = step
        m = state.trainer.step(state.stream.at(step), step)
        if step == first:
            summary.phase = f"training: step {step} took {duration(m['time/step_s'])}"
            log(f"[{state.name}] {summary.phase}; {cfg.train.steps - step} to go, "
                f"{progress_text(state.wall_time(), eta, step)}")
        if step % cfg.train.eval_every == 0 or step == cfg.train.steps:
            m.update(_evaluate(state, step))
            acc = m["eval/accuracy"]
            summary.final_eval_accuracy = acc
            summary.best_eval_accuracy = max(summary.best_eval_accuracy, acc)
            log(f"[{state.name}] step {step}/{cfg.train.steps} reward {m['train/reward']:.3f} "
                f"eval {acc:.3f} ({m['time/step_s']:.2f}s/step, {progress_text(state.wall_time(), eta, step)})")
        state.record.append_metrics({"step": step, **m})
        state.tracker.log(m, step)
        summary.steps_completed = step
        summary.final_reward = m["train/reward"]
        summary.final_response_length = m["train/response_length"]
        _write_summary(state)  # progress survives a crash; status says how far it got
        if reporter is not None and "eval/accuracy" in m and step < cfg.train.steps \
                and distributed.any_rank(state.main and reporter(step, m["eval/accuracy"])):
            summary.status, summary.error = RunStatus.pruned, {"step": step, "cause": "pruned by the tuner"}
            if state.main:
                checkpoint.remove(state.record.dir)
            log(f"[{state.name}] pruned at step {step}")
            return
        if step == cfg.train.steps:
            break
        if _stop_requested(state, should_stop):
            return
        if every and step % every == 0:
            _save_checkpoint(state)
    summary.status = RunStatus.completed
    if state.main:
        checkpoint.remove(state.record.dir)  # the run record is the product; a finished run needs no resume state


def _stop_requested(state: RunState, should_stop) -> bool:
    """At a step boundary: when asked to stop, checkpoint and end ``preempted`` (a re-run resumes)."""
    if should_stop is None or not distributed.any_rank(should_stop()):
        return False
    if checkpoint.peek_step(state.record.dir) != state.step:  # not when stopped just after resuming from it
        _save_checkpoint(state)
    state.summary.status = RunStatus.preempted
    state.summary.error = {"step": state.step, "cause": f"stopped at step {state.step}; checkpointed: a re-run resumes"}
    state.log(f"[{state.name}] stopping at step {state.step}: checkpoint written, the run resumes from it")
    return True


def _phase(state: RunState, text: str) -> None:
    """A phase of the run begins or ends: one line in the log, and the summary says it (heartbeat
    too), so a launcher's console can show it without reading the log."""
    state.log(f"[{state.name}] {text}")
    state.summary.phase = text
    _write_summary(state)


def _write_summary(state: RunState) -> None:
    """The summary as it stands, with a fresh heartbeat and wall time (rank 0 only: the record's writer)."""
    state.summary.heartbeat = time.time()
    state.summary.wall_time_s = state.wall_time()
    state.record.write_summary(state.summary)


def _warn(state: RunState, text: str) -> None:
    """Loud in the log, and kept in the summary, so a table built from this run can say so."""
    state.log(f"[{state.name}] WARNING: {text}")
    state.summary.warnings = [*(state.summary.warnings or []), text]


def _finalize(state: RunState) -> None:
    close = getattr(state.trainer.rollout, "close", None) if state.trainer is not None else None
    if close is not None:  # a rollout worker process ends with the run
        close()
    state.summary.phase = f"{state.summary.status} at step {state.summary.steps_completed}"
    _write_summary(state)
    state.tracker.finish(state.summary)


def _save_checkpoint(state: RunState) -> None:
    state.summary.wall_time_s = state.wall_time()
    checkpoint.save(state.record.dir, state.engine, checkpoint.TrainingState(
        step=state.step, config_hash=config_hash(state.cfg), seed=state.cfg.seed, summary=state.summary.to_json(),
        buffer=state.trainer.state_dict(),
        rollout=state.trainer.rollout.state_dict() if state.cfg.rollout.async_steps > 0 else None,
    ), rank=state.engine.rank)


# ---------------------------------------------------------------- helpers
def _rollout_kwargs(cfg, init_dir) -> dict:
    """vLLM starts from the policy's checkpoint (then follows the trainer's weights)."""
    r = cfg.rollout
    if r.backend.value != "vllm":
        return {}
    return {"model_dir": init_dir, "seed": cfg.seed, "gpu_memory_utilization": r.vllm_gpu_memory_utilization,
            "cpu_kv_cache_gib": r.vllm_cpu_kv_cache_gib}


def _engine_kwargs(cfg) -> dict:
    if cfg.engine.backend.value == "deepspeed":
        return {"micro_batch_per_gpu": cfg.batching.micro_batch_size}
    return {}


def _evaluate(state: RunState, step: int) -> dict[str, float]:
    """Eval with its own RNG stream, restoring the global one so training draws are unaffected; the
    per-prompt outcomes go to ``evals.jsonl`` (rank 0) before the step's metrics line is written, so a
    resume that cuts both back to the checkpoint's step keeps them aligned."""
    with torch.random.fork_rng():
        torch.manual_seed(state.cfg.seed + 7919)
        metrics, per_prompt = state.trainer.evaluate_prompts(state.eval_set)
    ids = [prompt_id(i, e.prompt) for i, e in enumerate(state.eval_set)]
    state.record.append_evals(EvalRow(step, state.cfg.rollout.eval_n, ids, per_prompt["correct"],
                                      per_prompt["length"]))
    return metrics


def _warm_start_rank0_first(cfg, task, note, main: bool):
    """Rank 0 builds (or finds) the warm-start checkpoint, saying so through ``note``; the others
    wait, then find it cached."""
    if main:
        init_dir = warm_start_dir(cfg, task, log=note)
    distributed.barrier()
    if not main:
        init_dir = warm_start_dir(cfg, task, log=_quiet)
    return init_dir
