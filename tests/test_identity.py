"""Identity = what can change the result. Every leaf of the schema is classified in one place
(trainer.identity); perturbing a leaf changes the hash exactly when the leaf counts for that
config; old run records are refused with the reason; labels come from what is on."""

import copy
import dataclasses
import json
import math

import pytest

from sweeps.compose import compose
from trainer import registry
from trainer.config import Config, LossNormalizer, VerifierName
from trainer.identity import HASH_VERSION, classify, config_hash, leaves, to_dict, variant_label
from trainer.knobs import ConfigError

LEAVES = sorted(leaves(to_dict(Config())))

# what makes a conditional key count (a config where it is in use)
ENABLERS = {
    "task.knights_knaves.*": lambda c: setattr(c.task, "name", "knights_knaves"),
    "task.jsonl.*": lambda c: setattr(c.task, "name", "jsonl"),
    "task.verifier": lambda c: setattr(c.task, "name", "jsonl"),
    "task.verifier_timeout_s": lambda c: (setattr(c.task, "name", "jsonl"),
                                          setattr(c.task, "verifier", VerifierName("exact+math_verify"))),
    "engine.zero_stage": lambda c: setattr(c.engine, "backend", "deepspeed"),
    "engine.offload_*": lambda c: setattr(c.engine, "backend", "deepspeed"),
    "engine.ds_config": lambda c: setattr(c.engine, "backend", "deepspeed"),
    "algorithm.loss_agg_max_len": lambda c: setattr(c.algorithm, "loss_agg", "seq_mean_token_sum_norm"),
    "batching.seqlen_partitions": lambda c: setattr(c.batching, "mode", "seqlen_balanced"),
    "batching.normalizer": lambda c: setattr(c.batching, "normalizer", LossNormalizer.micro_batch),
    "rollout.async_steps": lambda c: setattr(c.rollout, "async_steps", 1),
    **{f"{f.key}.*": (lambda c, f=f: setattr(registry.section_of(c, f), "enabled", True))
       for f in registry.FEATURES.values()},
    **{f"{loss.key}.*": (lambda c, n=loss.name: setattr(c.algorithm, "loss", n))
       for loss in registry.LOSSES.values() if loss.config is not None},
}
# what makes it not count (None: it always counts)
DISABLERS = {
    "model.*": lambda c: setattr(c.model, "path", "/models/some-checkpoint"),
    "task.arithmetic.*": lambda c: setattr(c.task, "name", "knights_knaves"),
    "task.knights_knaves.*": lambda c: None,
    "task.jsonl.*": lambda c: None,
    "task.verifier": lambda c: None,
    "task.verifier_timeout_s": lambda c: (setattr(c.task, "name", "jsonl"),
                                          setattr(c.task, "verifier", VerifierName("exact"))),
    "engine.zero_stage": lambda c: None, "engine.offload_*": lambda c: None, "engine.ds_config": lambda c: None,
    "algorithm.loss_agg_max_len": lambda c: None,
    "batching.seqlen_partitions": lambda c: None,
    "diagnostics.prob_bins": lambda c: setattr(c.diagnostics, "every", 0),
    "sft.*": lambda c: setattr(c.sft, "enabled", False),
    "sft.steps": lambda c: setattr(c.sft, "enabled", False),
    **{f"{f.key}.*": (lambda c: None) for f in registry.FEATURES.values()},
    **{f"{loss.key}.*": (lambda c: None) for loss in registry.LOSSES.values() if loss.config is not None},
}


def _get(cfg, key):
    obj = cfg
    for part in key.split(".")[:-1]:
        obj = getattr(obj, part)
    return obj, key.rsplit(".", 1)[-1]


def _perturbed(cfg, key):
    """A copy of ``cfg`` with ``key`` set to another value of its kind."""
    out = copy.deepcopy(cfg)
    obj, name = _get(out, key)
    value = getattr(obj, name)
    if isinstance(value, bool):
        new = not value
    elif hasattr(value, "value") and hasattr(type(value), "__members__"):  # an enum: another member
        new = next(m for m in type(value) if m != value)
    elif isinstance(value, (int, float)):
        new = 1.0 if isinstance(value, float) and not math.isfinite(value) else value * 2 + 1
    elif isinstance(value, str):
        new = value + "_other"
    elif isinstance(value, list):
        new = [*value, value[-1] if value else "x"]
    elif isinstance(value, dict):
        new = {**value, "extra": "1"}
    else:  # None
        new = 1
    setattr(obj, name, new)
    return out


def test_every_leaf_of_the_schema_is_classified():
    for key in LEAVES:
        classify(key)  # raises for an unclassified key
    with pytest.raises(KeyError, match="not classified"):
        classify("brand_new_section.knob")  # a new top-level section must be classified


@pytest.mark.parametrize("key", LEAVES)
def test_a_leaf_changes_the_hash_exactly_when_it_counts(key):
    pattern, counts = classify(key)
    cfg = Config()
    if counts is None:
        assert config_hash(_perturbed(cfg, key)) == config_hash(cfg), f"{key} is not a result key"
        return
    ENABLERS.get(pattern, lambda c: None)(cfg)
    assert counts(cfg), f"{key}: the enabler of {pattern} does not make it count"
    assert config_hash(_perturbed(cfg, key)) != config_hash(cfg), f"{key} counts here but the hash ignores it"
    if pattern in DISABLERS and not key.endswith(".enabled"):  # turning a feature on does change the hash
        off = Config()
        DISABLERS[pattern](off)
        if not counts(off):
            assert config_hash(_perturbed(off, key)) == config_hash(off), f"{key} does not count here"


def test_keys_a_run_does_not_use_leave_its_hash_alone():
    base = compose([])
    unused = copy.deepcopy(base)
    unused.task.knights_knaves.max_people = 4  # the arithmetic task reads no K&K knob
    unused.algorithm.nthr.eta = 0.5  # NTHR is off
    assert config_hash(unused) == config_hash(base)
    assert config_hash(compose(["engine.threads=2"])) == config_hash(base)
    assert config_hash(compose(["launcher.max_parallel=7", "tracker=wandb"])) == config_hash(base)
    assert config_hash(compose(["algorithm.kl.coef=0.01"])) != config_hash(base)


def test_a_null_verifier_is_hashed_as_the_checker_it_resolves_to():
    from trainer.tasks import verifier

    def jsonl(v):
        cfg = Config()
        cfg.task.name = "jsonl"
        cfg.task.verifier = None if v is None else VerifierName(v)
        return cfg

    here = "exact+math_verify" if verifier.math_verify_installed() else "exact"
    other = "exact" if here != "exact" else "exact+math_verify"
    assert config_hash(jsonl(None)) == config_hash(jsonl(here))  # the same checker runs: one cell
    assert config_hash(jsonl(None)) != config_hash(jsonl(other))
    arithmetic = Config()  # no answer checker to choose: the verifier's knobs leave its hash alone
    for key, value in (("verifier", VerifierName("exact")), ("verifier_timeout_s", 1.0), ("verifier_workers", 9)):
        changed = copy.deepcopy(arithmetic)
        setattr(changed.task, key, value)
        assert config_hash(changed) == config_hash(arithmetic), key


@pytest.mark.parametrize("overrides, label", [
    ([], "grpo"),
    (["variant=nthr"], "grpo+nthr"),
    (["variant=ar_lopti"], "grpo+ar+lopti"),
    (["algorithm=dfpo", "batching=query_preserved"], "gspo+dfpo_min_replace+qb"),
    (["variant=dfpo_orth_proj", "batching=query_preserved"], "gspo+dfpo_orth_proj_closed_form+qb"),
    (["experiment=cancellation_paper", "variant=qb_rb"], "grpo+qb+rb"),
    (["experiment=nthr_paper", "variant=nthr"], "grpo+ds+nthr"),
    (["algorithm=gspo", "variant=positive_only"], "gspo+sign_weight"),
])
def test_the_label_comes_from_what_is_on(overrides, label):
    assert variant_label(compose(overrides)) == label


def test_a_record_of_another_identity_version_is_refused(tmp_path):
    from trainer.run import run_training

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"run_id": "run", "config_hash": "0" * 12, "seed": 0,
                                                   "variant": "grpo"}))  # version 1: no hash_version
    expected = rf"identity version 1, and runs are now identified by version {HASH_VERSION}"
    with pytest.raises(ConfigError, match=expected):
        run_training(Config(), run_dir, log=lambda *a: None)
    assert json.loads((run_dir / "meta.json").read_text())["variant"] == "grpo"  # left as it was


def test_a_sweep_dir_with_runs_of_another_identity_version_is_refused(tmp_path):
    from sweeps.plan import make_plan

    old = tmp_path / "out" / "sweeps" / "old" / "runs" / "abc_s0"
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"run_id": "abc_s0", "config_hash": "abc", "seed": 0}))
    with pytest.raises(ConfigError, match=r"sweep.id=old: .* \(1 of version 1; .* use a new sweep.id"):
        make_plan([f"paths.output_root={tmp_path}/out", "sweep.id=old"])
    assert len(make_plan([f"paths.output_root={tmp_path}/out", "sweep.id=new"]).runs) == 1


def test_meta_records_the_identity_version_and_label():
    from trainer.identity import run_meta

    meta = run_meta(compose(["variant=nthr"]), "x_s0")
    assert dataclasses.asdict(meta)["hash_version"] == HASH_VERSION and meta.label == "grpo+nthr"
