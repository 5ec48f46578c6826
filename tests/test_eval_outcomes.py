"""Per-prompt eval outcomes (``evals.jsonl``): one columnar row per eval step, step 0 included; cut
back on resume exactly like ``metrics.jsonl``; and the eval draws of one prompt do not depend on the
other prompts (common random numbers per (seed, prompt) across the cells of a sweep)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from sweeps.compose import compose
from tests.conftest import fast_overrides
from trainer.modeling import load_policy, load_tokenizer
from trainer.rollout import SamplingParams, build_rollout
from trainer.run import run_training
from trainer.run_record import EvalRow, RunRecord, prompt_id, read_jsonl
from trainer.tasks import build_task

QUIET = dict(log=lambda *a: None)


def _last_step(run_dir) -> int:
    return max((r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")), default=-1)


def test_prompt_id_is_index_and_sha256_prefix():
    assert prompt_id(3, "1+2=") == "3:" + hashlib.sha256(b"1+2=").hexdigest()[:8]


def test_every_eval_step_has_one_row_that_agrees_with_the_metrics(tmp_path):
    cfg = compose(fast_overrides(tmp_path, steps=5))  # eval_every=2: steps 0, 2, 4 and the last, 5
    run_training(cfg, tmp_path / "run", **QUIET)
    record = RunRecord(tmp_path / "run")
    evals, metrics = record.evals(), {r["step"]: r for r in record.metrics()}
    assert [r.step for r in evals] == [0, 2, 4, 5] == [s for s, r in metrics.items() if "eval/accuracy" in r]
    eval_list = build_task(cfg.task).eval
    for row in evals:
        assert row.eval_n == cfg.rollout.eval_n == 2
        assert row.prompt_ids == [prompt_id(i, e.prompt) for i, e in enumerate(eval_list)]
        assert all(0 <= c <= row.eval_n for c in row.correct)
        assert all(1 <= n <= cfg.rollout.max_new_tokens for n in row.length)
        # pass@1 of the run's metrics = correct samples / all samples
        assert sum(row.correct) / (row.eval_n * len(row.correct)) == pytest.approx(metrics[row.step]["eval/accuracy"])


def test_resume_cuts_evals_back_to_the_checkpoint(tmp_path):
    """Interrupted after step 3's eval with the checkpoint at step 2: the resumed run's evals.jsonl is
    byte for byte an uninterrupted run's (step 3 not twice)."""
    cfg = compose(fast_overrides(tmp_path, steps=4) + ["train.checkpoint_every=2", "train.eval_every=1"])

    def crash_after_3():
        if _last_step(tmp_path / "cut") == 3:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", should_stop=crash_after_3, **QUIET)
    assert [r.step for r in RunRecord(tmp_path / "cut").evals()] == [0, 1, 2, 3]
    run_training(cfg, tmp_path / "cut", **QUIET)
    run_training(cfg, tmp_path / "whole", **QUIET)
    cut, whole = ((tmp_path / d / "evals.jsonl").read_bytes() for d in ("cut", "whole"))
    assert [r["step"] for r in read_jsonl(tmp_path / "cut" / "evals.jsonl")] == [0, 1, 2, 3, 4]
    assert cut == whole


def test_a_malformed_eval_row_is_skipped():
    assert EvalRow.from_json({"step": 1, "eval_n": 2, "prompt_ids": ["0:ab"], "correct": [1, 2], "length": [3.0]}) \
        is None
    assert EvalRow.from_json({"step": 1, "eval_n": 2}) is None


def test_one_prompts_eval_draws_do_not_depend_on_the_other_prompts(model_dir):
    """HF sampling draws each row's token from its own slice of the RNG stream (torch.multinomial,
    one sample: argmax of p / Exp(1) noise per row and vocabulary entry), so under one seed prompt 0's
    samples are the same whatever the other prompts (and hence the other rows' lengths) are."""
    rollout = build_rollout("hf", load_policy(model_dir), load_tokenizer(model_dir), torch.device("cpu"))
    params = SamplingParams(n=4, max_new_tokens=8, temperature=1.0)
    outs = []
    for seed, others in ((7926, ["33+4=", "12+30="]), (7926, ["9+9=", "5="]), (7927, ["33+4=", "12+30="])):
        torch.manual_seed(seed)
        outs.append(rollout.generate(["1+2=", *others], params).completions)
    assert outs[0][:4] == outs[1][:4]
    assert outs[0][:4] != outs[2][:4]  # negative control: another seed draws other samples
