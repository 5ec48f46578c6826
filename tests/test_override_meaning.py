"""A command line that cannot mean what it says is refused before anything runs, in one line that
names the key, the value and what is valid: unknown keys in every override form, knobs of what is
off, non-finite values, sizes past the model, empty or repeated grids, seeds given twice, grammar a
grid cannot expand, and (in --dry-run too) launcher options, model paths and devices."""

import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.compose import compose
from sweeps.plan import make_plan
from trainer.identity import config_hash
from trainer.knobs import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override, expected", [
    ("+algorithm.kl.cof=0", "algorithm.kl.cof: not a key of the config; did you mean algorithm.kl.coef?"),
    ("train.stpes=10", "train.stpes: not a key of the config; did you mean train.steps?"),
    ("+train.stpes=10", "train.stpes: not a key of the config; did you mean train.steps?"),
    ("++algorithm.nthr.bta=1", "algorithm.nthr.bta: not a key of the config; did you mean algorithm.nthr.beta?"),
    ("algorithm.nthr_beta=1", "did you mean algorithm.nthr.beta?"),
    ("algorithm.nthr.eta=0.5", "algorithm.nthr.eta=0.5: has no effect here, algorithm.nthr is off"),
    ("task.knights_knaves.max_people=4", "task.knights_knaves.max_people=4: has no effect here, task.name=arithmetic"),
    ("algorithm.dfpo.floor=0.01", "algorithm.dfpo.floor=0.01: has no effect here, algorithm.loss=ppo_clip"),
    ("algorithm.kl.coef=inf", "algorithm.kl.coef=inf: must be a finite number"),
    ("optim.lr=inf", "optim.lr=inf: must be a finite number"),
    ("rollout.temperature=inf", "rollout.temperature=inf: must be a finite number"),
    ("rollout.n=100000000000", "rollout.n=100000000000: must be <= 4096"),
    ("rollout.max_new_tokens=100000000", "the tiny model sees at most model.max_position_embeddings=256"),
    ("task.arithmetic.ops=[]", "task.arithmetic.ops=[]: one or more of +, -, *"),
    ("tracker.mode=sometimes", "tracker.mode=sometimes: Invalid value 'sometimes', expected one of"),
    ("algorithm=foo", "algorithm=foo: no such option in conf/algorithm/; available: dapo"),
])
def test_a_bad_override_is_refused_in_one_line(override, expected):
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize("overrides", [
    ["algorithm.nthr.enabled=true", "algorithm.nthr.eta=0.5"],  # the knob of a feature that is on
    ["variant=nthr", "algorithm.nthr.beta=-inf"],  # -inf is documented for NTHR's β
    ["task=knights_knaves", "task.knights_knaves.max_people=4", "rollout.max_new_tokens=32"],
    ["algorithm.nthr.enabled=false"],  # a switch is always the user's to set
])
def test_overrides_that_mean_something_compose(overrides):
    compose(overrides)


@pytest.mark.parametrize("overrides, expected", [
    (["algorithm.nthr.eta=auto,0.5"], "algorithm.nthr.eta=auto: has no effect here, algorithm.nthr is off"),
    (["sweep.seeds=[]"], "sweep.seeds=[]: an empty axis makes an empty grid"),
    (["seed=range(0)"], "seed=range(0): an empty axis makes an empty grid"),
    (["seed=0,1", "sweep.seeds=[2,3]"], "seed and sweep.seeds are both on the command line"),
    (["algorithm.kl.coef=interval(0,0.1)"], "an interval is a search space, not a grid"),
    (["algorithm.kl.coef=0,0"], "algorithm.kl.coef=0,0: 0 appears more than once"),
    (["algorithm.kl.coef=0,0.0"], "cells 0 and 1 compose to the same config and seed "
                                  "(algorithm.kl.coef=0 and algorithm.kl.coef=0.0)"),
    (["algorithm.kl.cofe=0,0.1"], "algorithm.kl.cofe: not a key of the config; did you mean algorithm.kl.coef?"),
])
def test_a_sweep_that_cannot_mean_what_it_says_is_refused(tmp_path, overrides, expected):
    with pytest.raises(ConfigError) as e:
        make_plan([f"paths.output_root={tmp_path}", *overrides])
    assert expected in str(e.value), str(e.value)
    assert not (tmp_path / "sweeps").exists()  # nothing written


@pytest.mark.parametrize("overrides, expected", [
    (["launcher=slurm", "launcher.partition=' '"], "launcher.partition=' ': must be a non-empty single-line"),
    (["launcher=slurm", "+launcher.sbatch_extra.array=0-3"], "launcher.sbatch_extra.array: set by the launcher itself"),
    (["model.path=/no/such/checkpoint"], "model.path='/no/such/checkpoint': no Hugging Face checkpoint there"),
    (["engine.device=cuda"], "engine.device=cuda: no CUDA device on this machine"),
    (["task=jsonl", "task.jsonl.path=/no/such.jsonl"], "task.jsonl.path='/no/such.jsonl': no such file"),
])
def test_dry_run_runs_every_check_the_submit_runs_and_prints_no_traceback(tmp_path, overrides, expected):
    import torch

    if "engine.device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "--dry-run", f"paths.output_root={tmp_path}",
                          *overrides], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert expected in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "sweeps").exists()


def test_a_switch_and_a_replaced_override_are_not_refused():
    # sft.steps=0 is what turns the warm start off; the earlier sft.steps=30 is replaced, not ignored
    cfg = compose(["sft.steps=30", "sft.steps=0"])
    assert cfg.sft.steps == 0
    with pytest.raises(ConfigError, match=r"sft.batch_size=32: has no effect here"):
        compose(["sft.steps=0", "sft.batch_size=32"])


def test_a_key_set_to_its_own_off_value_is_a_control_cell_not_refused(tmp_path):
    """A key that counts only at some of its own values (rollout.async_steps > 0, a non-default
    batching.normalizer) may be set to its off value: a sweep over it has a control cell."""
    plan = make_plan([f"paths.output_root={tmp_path}", "rollout.async_steps=0,1,2",
                      "batching.normalizer=mini_batch"])
    assert [r.cfg.rollout.async_steps for r in plan.runs] == [0, 1, 2]
    assert len({config_hash(r.cfg) for r in plan.runs}) == 3


def test_a_fixed_override_used_by_some_cells_is_planned_and_one_used_by_none_refused(tmp_path):
    plan = make_plan([f"paths.output_root={tmp_path}", "variant=grpo,rb", "batching.reward_balanced.min_frac=0.3"])
    assert [r.cfg.batching.reward_balanced.min_frac for r in plan.runs] == [0.3, 0.3]  # counts in the rb cell
    with pytest.raises(ConfigError, match=r"algorithm.nthr.eta=0.5: has no effect here.*\[2 of 2 cells\]"):
        make_plan([f"paths.output_root={tmp_path}", "seed=0,1", "algorithm.nthr.eta=0.5"])
