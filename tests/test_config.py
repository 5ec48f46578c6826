"""Config composition: typed schema, namespaced knobs, errors that name key, value and what is valid."""

import dataclasses
from pathlib import Path

import pytest

from sweeps.compose import compose, conf_dir
from sweeps.expand import build_sweep_grid
from trainer.config import Config, ConfigError
from trainer.identity import config_hash
from trainer.validation import validate


def test_defaults_compose_and_validate():
    cfg = compose([])
    assert isinstance(cfg, Config)
    assert cfg.algorithm.kl.coef == 0.0 and cfg.rollout.n == 8


GROUPS = ["model", "task", "algorithm", "batching", "rollout", "engine", "launcher", "tracker", "sweep",
          "experiment", "variant", "paper_scale"]
# what an option needs beside it to be valid (DFPO keeps whole groups, a checkpoint needs its path)
EXTRA = {
    "task=jsonl": ["task.jsonl.path=/x.jsonl"],
    "model=local_checkpoint": ["model.path=/x"],
    "algorithm=dfpo": ["batching=query_preserved"],
    "variant=dfpo_min_replace": ["batching=query_preserved"],
    "variant=dfpo_orth_proj": ["batching=query_preserved"],
    "variant=dfpo_no_stop_grad": ["batching=query_preserved"],
    "variant=dfpo_scale_half": ["batching=query_preserved"],
    "+paper_scale=cancellation": ["model.path=/x"],
    "+paper_scale=dfpo": ["model.path=/x"],
}


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
    assert options, f"conf/{group}/ is empty"
    prefix = "+" if group == "paper_scale" else ""  # not in the defaults list: appended
    for opt in options:
        choice = f"{prefix}{group}={opt}"
        compose([choice, *EXTRA.get(choice, [])])


def test_unknown_key_is_rejected_with_valid_keys():
    with pytest.raises(ConfigError) as e:
        compose(["algorithm.kl.cof=0.1"])
    assert "algorithm.kl.cof" in str(e.value)
    assert "coef, estimator, placement" in str(e.value)


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as e:
        compose(["batching.mini_batch_size=abc"])
    assert "batching.mini_batch_size" in str(e.value) and "abc" in str(e.value)


def test_bad_enum_lists_valid_values():
    with pytest.raises(ConfigError) as e:
        compose(["algorithm.kl.estimator=k9"])
    assert "k9" in str(e.value) and "k1, k2, k3" in str(e.value)


@pytest.mark.parametrize(
    "override, needle",
    [
        ("algorithm.clip.low=1.5", "algorithm.clip.low=1.5: must be < 1.0"),
        ("algorithm.kl.coef=-0.1", "algorithm.kl.coef=-0.1: must be >= 0.0"),
        ("rollout.n=1", "rollout.n=1: must be >= 2"),
        ("rollout.top_p=0", "rollout.top_p=0.0: must be > 0.0"),
        ("algorithm.clip.dual=0.5", "algorithm.clip.dual=0.5: must be > 1.0"),
        ("batching.mini_batch_size=48", "must divide the rollout batch"),
        ("batching.micro_batch_size=96", "batching.micro_batch_size=96: must divide batching.mini_batch_size=256"),
    ],
)
def test_out_of_range_values_are_rejected(override, needle):
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert needle in str(e.value)


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as e:
        compose(["algorithm.clip.low=1.5", "algorithm.kl.coef=-1"])
    assert "algorithm.clip.low" in str(e.value) and "algorithm.kl.coef" in str(e.value)


def test_query_preserved_needs_multiple_of_group_size():
    with pytest.raises(ConfigError) as e:
        compose(["batching=query_preserved", "rollout.n=6", "rollout.prompts_per_step=16",
                 "batching.mini_batch_size=32", "batching.micro_batch_size=16"])
    assert "multiple of rollout.n=6" in str(e.value)


def test_jsonl_task_requires_a_path():
    with pytest.raises(ConfigError, match="task.jsonl.path"):
        compose(["task=jsonl"])


def test_unknown_group_option_lists_available():
    with pytest.raises(ConfigError) as e:
        compose(["algorithm=grpoo"])
    assert "gspo" in str(e.value) and "dr_grpo" in str(e.value)


def test_no_bare_greek_letters_as_keys():
    """docs/algorithms.md §0.2: β, η, α, ε, ρ appear only under the paper's namespace (algorithm.nthr.beta,
    algorithm.lopti.eta, ...), never as algorithm.beta or a top-level key."""
    bare = {"beta", "eta", "alpha", "epsilon", "eps_clip", "rho"}
    namespaces = {"algorithm.nthr", "algorithm.lopti", "algorithm.adv_reweight"}

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                yield from walk(v, prefix + f.name + ".")
            else:
                yield prefix + f.name, f

    for key, f in walk(Config()):
        parent, _, leaf = key.rpartition(".")
        assert leaf not in bare or parent in namespaces, key
        assert f.metadata.get("help"), f"{key} has no documentation"


def test_config_hash_ignores_seed_and_paths_but_not_knobs():
    a, b = compose(["seed=0"]), compose(["seed=1", "paths.output_root=/elsewhere"])
    c = compose(["algorithm.kl.coef=0.1"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_grid_expansion_cli_and_sweep_params():
    grid = build_sweep_grid(["algorithm.kl.coef=0,0.1", "rollout.n=4"], {"algorithm.clip.high": "0.2,0.28"}, [0, 1, 2])
    assert grid.keys == ["algorithm.clip.high", "algorithm.kl.coef", "seed"]
    cells = grid.cells()
    assert len(cells) == 2 * 2 * 3
    assert len({tuple(c.items()) for c in cells}) == 12
    assert "rollout.n=4" in grid.overrides(cells[0])


def test_cli_sweep_values_override_sweep_params():
    grid = build_sweep_grid(["algorithm.kl.coef=0,0.5"], {"algorithm.kl.coef": "1,2,3"}, [0])
    assert dict(grid.axes)["algorithm.kl.coef"] == ("0", "0.5")


def test_a_single_cli_value_pins_a_sweep_params_axis():
    # the user said kl=0.0: no cell may run the preset's other values
    grid = build_sweep_grid(["algorithm.kl.coef=0.0"], {"algorithm.kl.coef": "0.0,0.01", "rollout.n": "4,8"}, [0, 1])
    assert grid.keys == ["rollout.n", "seed"]
    cells = grid.cells()
    assert len(cells) == 4 and all("algorithm.kl.coef=0.0" in grid.overrides(c) for c in cells)
    assert not any("algorithm.kl.coef=0.01" in grid.overrides(c) for c in cells)


def test_range_sweep_syntax():
    grid = build_sweep_grid(["seed=range(3)"], {}, [0])
    assert dict(grid.axes)["seed"] == ("0", "1", "2")


def test_validate_direct_dataclass_use():
    cfg = Config()
    cfg.rollout.temperature = 0.0
    with pytest.raises(ConfigError, match="rollout.temperature=0.0: must be > 0.0"):
        validate(cfg)


def test_configuration_doc_is_generated_from_the_schema():
    from trainer.config_docs import render

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert doc == render(), "docs/configuration.md is stale: python -m trainer.config_docs > docs/configuration.md"


@pytest.mark.parametrize("overrides,key", [
    (["algorithm.lopti.eta=1.0"], "algorithm.lopti.eta=1.0"),
    (["algorithm.lopti.eta=0"], "algorithm.lopti.eta=0"),
    (["algorithm.adv_reweight.alpha=1.5"], "algorithm.adv_reweight.alpha=1.5"),
    (["algorithm.nthr.eta=1.5"], "algorithm.nthr.eta=1.5"),
    (["algorithm.nthr.eta=two_abs"], "algorithm.nthr.eta='two_abs'"),
    (["algorithm.nthr.enabled=true", "task.format_reward=0.1"], "task.correct_threshold=null"),
    (["algorithm.lopti.enabled=true", "algorithm.ppo_epochs=2"], "algorithm.ppo_epochs=2"),
    (["batching=query_preserved", "batching.mini_batch_size=12", "rollout.prompts_per_step=12"],
     "batching.mini_batch_size=12"),
    (["algorithm=dfpo"], "batching.mode=shuffled"),
    (["algorithm=dfpo", "batching=query_preserved", "batching.micro_batch_size=4"], "batching.micro_batch_size=4"),
    (["algorithm=grpo_fix", "algorithm.clip.dual=10"], "algorithm.clip.dual=10.0"),
    (["batching=query_preserved", "batching.reward_balanced.enabled=true", "batching.reward_balanced.unit=rollout"],
     "batching.reward_balanced.unit=rollout"),
    (["diagnostics.prob_bins=[0.5,0.5]"], "diagnostics.prob_bins"),
])
def test_variant_misconfigurations_are_rejected_naming_key_and_value(overrides, key):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert key in str(e.value), str(e.value)


def test_no_effect_warnings():
    from trainer.validation import config_warnings

    on_policy = compose(["algorithm=grpo_fix", "batching.mini_batch_size=512"])
    assert any("has no effect" in w for w in config_warnings(on_policy))
    off_policy = compose(["algorithm=grpo_fix"])  # 2 mini-batches per rollout batch
    assert not config_warnings(off_policy)


@pytest.mark.parametrize("override, says", [
    ("model.num_kv_heads=0", "model.num_kv_heads=0: must be >= 1"),
    ("model.num_heads=0", "model.num_heads=0: must be >= 1"),
    ("batching.mini_batch_size=0", "batching.mini_batch_size=0: must be >= 1"),
])
def test_a_zero_size_is_a_range_error_not_a_crash_in_the_cross_checks(override, says):
    # the cross-key rules (num_heads % num_kv_heads, batch % mini_batch) run only once sizes are in range
    with pytest.raises(ConfigError, match=says):
        compose([override])
