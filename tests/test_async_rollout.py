"""``rollout.async_steps`` = k: the batch trained at step t is sampled from the policy after step
t − 1 − k. Checked against a reference built here from the trainer's own weight snapshots; the
worker process against the inline sampler over whole runs; resume, a killed worker and refusals."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from sweeps.compose import compose
from tests.conftest import fast_overrides, hash_trainer
from tests.lagged_recording import run_recording
from trainer.knobs import ConfigError
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout.base import SamplingParams
from trainer.rollout.hf import HFRollout
from trainer.rollout.lagged import LaggedRollout
from trainer.rollout.lagged_sampler import InlineSampler, ProcessSampler, RolloutWorkerDied
from trainer.run import run_training
from trainer.run_record import read_jsonl
from trainer.seeds import sampling_seed
from trainer.validation import validate

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5


def _cfg(k: int, **extra):
    return compose(["rollout.n=4", "batching.mini_batch_size=8", "batching.micro_batch_size=8",
                    "rollout.max_new_tokens=4", f"rollout.async_steps={k}", *extra])


def _lagged_trainer(model_dir, k: int, sampler_kind: str):
    cfg = _cfg(k)
    trainer = hash_trainer(model_dir, cfg)
    task = trainer.task
    sampler = (ProcessSampler(model_dir, threads=1) if sampler_kind == "process"
               else InlineSampler(model_dir, 1, torch.device("cpu")))
    trainer.rollout = LaggedRollout(trainer.rollout, trainer.policy, sampler, k, cfg.seed, STEPS,
                                    lambda s: [e.prompt for e in task.train])
    return trainer


@pytest.mark.parametrize("sampler_kind", ["inline", "process"])
@pytest.mark.parametrize("k", [1, 2])
def test_each_batch_is_sampled_from_the_weights_k_steps_back(model_dir, k, sampler_kind):
    """Reference: snapshots of the trainer's weights after every step; step t's batch, sampled here by
    plain HF generate from snapshot max(t − 1 − k, 0) with the step's seed, is the batch it trained on."""
    trainer = _lagged_trainer(model_dir, k, sampler_kind)
    snapshots, batches = run_recording(trainer, k, STEPS)
    assert not torch.equal(snapshots[0]["lm_head.weight"], snapshots[-1]["lm_head.weight"])  # it did learn
    ref_policy = load_policy(model_dir, dtype=torch.float64)
    ref = HFRollout(ref_policy, load_tokenizer(model_dir), torch.device("cpu"))
    prompts = [e.prompt for e in trainer.task.train]
    for step, batch in batches:
        ref_policy.load_state_dict(snapshots[max(step - 1 - k, 0)])
        torch.manual_seed(sampling_seed(trainer.cfg.seed, step))
        expected = ref.generate(prompts, dataclasses.replace(trainer.sampling, logprobs=True))
        assert torch.equal(batch.input_ids, expected.input_ids), step
        assert torch.allclose(batch.rollout_logp, expected.rollout_logp, atol=1e-12), step
        if step > 1 + k:  # from stale weights: the sample differs from one drawn with the current ones
            ref_policy.load_state_dict(snapshots[step - 1])
            torch.manual_seed(sampling_seed(trainer.cfg.seed, step))
            fresh = ref.generate(prompts, dataclasses.replace(trainer.sampling, logprobs=True))
            assert not torch.allclose(batch.rollout_logp, fresh.rollout_logp, atol=1e-9), step


def _run(tmp_path, name, k, worker, steps=6, **kw):
    cfg = compose([*fast_overrides(tmp_path, steps=steps), "model.hidden_size=64", "model.intermediate_size=128",
                   "sft.steps=300", "rollout.prompts_per_step=8", f"rollout.async_steps={k}",
                   f"rollout.async_worker={worker}", "engine.threads=1", "train.eval_every=3"])
    summary = run_training(cfg, tmp_path / name, log=lambda *a: None, **kw)
    return summary, read_jsonl(tmp_path / name / "metrics.jsonl")


def _results(rows):
    """What a run computed (not how long it took)."""
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/", "async/trainer_wait",
                                                                "async/sampler_idle"))} for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2])
def test_a_run_with_the_worker_process_equals_the_inline_reference(tmp_path, k):
    s_inline, inline = _run(tmp_path, "inline", k, "inline")
    s_proc, proc = _run(tmp_path, "process", k, "process")
    assert s_inline.status == s_proc.status == "completed"
    assert _results(proc) == _results(inline)
    assert [r["async/staleness"] for r in proc[1:]] == [min(k, t - 1) for t in range(1, 7)]
    assert any(r["train/grad_norm"] > 0 for r in proc[1:])
    _, sync = _run(tmp_path, "sync", 0, "process")
    assert "async/staleness" not in sync[1]
    assert [r["train/grad_norm"] for r in sync[1:]] != [r["train/grad_norm"] for r in proc[1:]]  # the lag matters


@pytest.mark.slow
def test_a_stopped_and_resumed_k1_run_equals_an_uninterrupted_one(tmp_path):
    _, whole = _run(tmp_path, "whole", 1, "process")
    def should_stop():  # after step 3 (the warm-start eval is line 0): batch 4, from θ_2, is in flight
        return len(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 4

    first, _ = _run(tmp_path, "cut", 1, "process", should_stop=should_stop)
    assert first.status == "preempted" and first.steps_completed == 3
    again, cut = _run(tmp_path, "cut", 1, "process")
    assert again.status == "completed" and again.resumed_from_step == 3
    assert _results(cut) == _results(whole)


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_with_its_cause(tmp_path):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        if calls["n"] == 2:
            _kill_rollout_workers()
        return False

    summary, _ = _run(tmp_path, "killed", 1, "process", steps=8, should_stop=should_stop)
    assert summary.status == "failed", summary
    cause = summary.error["cause"]
    assert "rollout worker" in cause and "SIGKILL" in cause and summary.error["step"] in (3, 4), cause


def _kill_rollout_workers() -> int:
    """SIGKILL every spawned child of this process (the rollout worker is the only one in these runs)."""
    killed = 0
    for child in psutil.Process().children(recursive=True):
        if "multiprocessing.spawn" in " ".join(child.cmdline()):
            child.send_signal(signal.SIGKILL)
            killed += 1
    assert killed, "no rollout worker found"
    return killed


def test_a_worker_that_raises_reports_the_exception(model_dir):
    sampler = ProcessSampler(model_dir, threads=1)
    try:
        sampler.send_weights(0, {"no.such.weight": torch.zeros(3)})
        sampler.submit(1, ["1+1="], SamplingParams(n=2, max_new_tokens=3), seed=1)
        with pytest.raises(RolloutWorkerDied) as e:
            sampler.result(1)
        assert str(e.value) == ("the rollout worker failed loading weights version 0: RuntimeError: Error(s) in "
                                "loading state_dict for Qwen2ForCausalLM:")
        assert "no.such.weight" in e.value.worker_traceback
    finally:
        sampler.close()


def test_the_worker_does_not_outlive_its_trainer(model_dir, tmp_path):
    """A trainer killed outright (SIGKILL: no cleanup runs) leaves no rollout worker behind."""
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from trainer.rollout.lagged_sampler import ProcessSampler\n"
              "s = ProcessSampler(%r, 1); print(s.proc.pid, flush=True); time.sleep(600)\n"
              ) % (str(ROOT), str(model_dir))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert psutil.pid_exists(worker)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while psutil.pid_exists(worker) and psutil.Process(worker).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "the rollout worker outlived its trainer"
        time.sleep(0.1)


@pytest.mark.parametrize("overrides, expected", [
    (["launcher.tasks_per_node=2", "engine=deepspeed_zero2"], "rollout.async_steps=1: one process per run"),
    (["rollout=vllm", "engine.device=cuda"], "rollout.async_steps=1: rollout.async_worker=process starts a second"),
    (["engine=deepspeed_zero3"], "rollout.async_steps=1: ZeRO-3 partitions the weights"),
    (["algorithm.old_logp_source=rollout"], "rollout.async_steps=1: the sampler's log-probs are the behaviour"),
])
def test_what_the_lagged_sampler_cannot_run_with_is_refused_in_one_line(overrides, expected):
    with pytest.raises(ConfigError) as e:
        validate(compose(["rollout.async_steps=1", *overrides]))
    assert any(line.startswith(expected) for line in str(e.value).splitlines()), str(e.value)


def test_async_steps_0_builds_no_lagged_sampler_and_keeps_the_hash():
    from trainer.identity import config_hash

    assert config_hash(compose(["rollout.async_steps=0", "rollout.async_worker=inline"])) == config_hash(compose([]))
    assert config_hash(compose(["rollout.async_steps=1"])) != config_hash(compose([]))
    assert config_hash(compose(["rollout.async_steps=1", "rollout.async_worker=inline"])) == \
        config_hash(compose(["rollout.async_steps=1"]))  # the two samplers draw the same batches


def test_an_hf_worker_process_may_share_the_trainers_gpu():
    """The worker samples on the trainer's device; only a second vLLM engine is CPU-only."""
    validate(compose(["rollout.async_steps=1", "engine.device=cuda"]))
