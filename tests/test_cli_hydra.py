"""The Hydra habits a researcher brings: --cfg job|all, --info, config --groups, -m, hydra.*
overrides, and argument errors that show the subcommand's own usage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import COMMANDS, grpolab

CONF = Path(__file__).resolve().parents[1] / "conf"


def conf_groups() -> dict[str, list[str]]:
    """{group: options}: every folder under conf/ holding YAML files, walked here with os.walk."""
    out = {}
    for folder, _, files in os.walk(CONF):
        options = sorted(f[:-5] for f in files if f.endswith(".yaml"))
        if folder != str(CONF) and options:
            out[os.path.relpath(folder, CONF)] = options
    return out


def test_cfg_job_is_the_config_command_s_yaml(capsys):
    rc, config_out, _ = grpolab(capsys, "config", "algorithm=gspo", "seed=3")
    assert rc == 0
    for command in ("config", "train", "sweep"):
        rc, out, _ = grpolab(capsys, command, "--cfg", "job", "algorithm=gspo", "seed=3")
        assert rc == 0, command
        assert yaml.safe_load(out) == yaml.safe_load(config_out), command


def test_cfg_all_adds_hydra_s_node_to_the_job_config(capsys):
    _, job, _ = grpolab(capsys, "config", "--cfg", "job", "algorithm=gspo")
    rc, out, _ = grpolab(capsys, "config", "--cfg", "all", "algorithm=gspo")
    assert rc == 0
    everything = yaml.safe_load(out)
    hydra = everything.pop("hydra")
    assert everything == yaml.safe_load(job)
    assert {"run", "sweep", "runtime"} <= set(hydra)  # Hydra's own node, as its compose API returns it
    assert "algorithm=gspo" in hydra["overrides"]["task"]


def test_sweep_cfg_prints_one_document_per_cell(capsys):
    rc, out, _ = grpolab(capsys, "sweep", "--cfg", "job", "algorithm.kl.coef=0,0.05", "seed=0")
    assert rc == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["algorithm"]["kl"]["coef"] for d in docs] == [0.0, 0.05]


def test_config_groups_lists_every_conf_folder_and_its_options(capsys):
    rc, out, _ = grpolab(capsys, "config", "--groups")
    assert rc == 0
    listed, group = {}, None
    for line in out.splitlines():
        if not line.startswith(" "):
            group, _, text = line.partition(": ")
            assert text.strip(), f"group {group} has no description"
            listed[group] = []
        else:
            listed[group].append(line.split()[0])
    assert listed == conf_groups()


def test_config_groups_describes_each_option_by_its_yaml_s_first_comment(capsys):
    _, out, _ = grpolab(capsys, "config", "--groups")
    first = (CONF / "algorithm" / "dr_grpo.yaml").read_text().splitlines()[0].lstrip("# ")
    assert any(line.split(None, 1) == ["dr_grpo", first] for line in out.splitlines())


@pytest.mark.parametrize("command", ["config", "train", "sweep"])
def test_info_prints_search_path_groups_and_defaults_and_runs_nothing(command, capsys, tmp_path):
    rc, out, _ = grpolab(capsys, command, "--info", "algorithm=gspo", f"paths.output_root={tmp_path}/out")
    assert rc == 0
    assert str(CONF) in out  # the search path names the conf dir
    for group, options in conf_groups().items():
        assert f"  {group}: {', '.join(options)}" in out
    assert "  algorithm/gspo" in out.split("Defaults list")[1]
    assert not (tmp_path / "out").exists()


def test_train_multirun_with_a_sweep_is_refused_pointing_at_sweep(capsys, tmp_path):
    rc, out, err = grpolab(capsys, "train", "-m", "algorithm.kl.coef=0,0.05", f"paths.output_root={tmp_path}")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "algorithm.kl.coef=0,0.05" in lines[0]
    assert "grpolab sweep algorithm.kl.coef=0,0.05" in lines[0]
    assert not any(tmp_path.iterdir())


def test_train_multirun_without_a_sweep_says_one_line_and_trains_one_config(capsys):
    rc, out, err = grpolab(capsys, "train", "-m", "--dry-run", "seed=1")
    assert rc == 0
    assert "grpolab sweep seed=1" in err and "dry run" in out


def test_a_comma_sweep_on_config_or_tune_points_at_sweep(capsys):
    for command in ("config", "tune"):
        rc, _, err = grpolab(capsys, command, "seed=0,1")
        assert rc == 2 and "grpolab sweep seed=0,1" in err and "--multirun" not in err


def test_hydra_s_multirun_advice_is_rewritten():
    from sweeps.compose import compose_dict, hydra_context
    from trainer.knobs import ConfigError

    with hydra_context(), pytest.raises(ConfigError) as e:  # Hydra's own message for a comma in a value
        compose_dict(["seed=0,1"])
    assert "--multirun" not in str(e.value) and "grpolab sweep" in str(e.value)


@pytest.mark.parametrize("override,instead", [("hydra.run.dir=/tmp/x", "paths.output_root"),
                                              ("hydra.run.dir=/tmp/x", "--run-dir"),
                                              ("hydra.sweep.dir=/tmp/x", "sweep.id"),
                                              ("hydra.job.chdir=true", "never changes directory")])
@pytest.mark.parametrize("command", ["config", "train", "sweep"])
def test_hydra_overrides_are_refused_before_anything_runs(command, override, instead, capsys, tmp_path):
    rc, out, err = grpolab(capsys, command, override, f"paths.output_root={tmp_path}/out")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and override.split("=")[0] in err and instead in err
    assert not (tmp_path / "out").exists()


def test_a_bad_group_option_lists_that_group_s_options_only(capsys):
    rc, _, err = grpolab(capsys, "config", "variant=")
    assert rc == 2
    assert err.strip().endswith(", ".join(conf_groups()["variant"]))
    assert "valid keys" not in err
    rc, _, err = grpolab(capsys, "config", "algorithm/features=foo")
    assert rc == 2 and "valid keys" not in err
    assert f"options of algorithm/features: {', '.join(conf_groups()['algorithm/features'])}" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_shows_the_subcommand_s_usage(command, capsys):
    rc, out, err = grpolab(capsys, command, "--bogus", "x")
    assert rc == 2
    assert err.startswith(f"usage: grpolab {command} "), err
    assert "--bogus" in err.strip().splitlines()[-1]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,valid", [(["config", "--cfg", "everything"], "'job', 'all'"),
                                        (["table", "kl", "--digits", "-1"], "from 0 to 12"),
                                        (["report", "kl", "--digits", "many"], "from 0 to 12"),
                                        (["plot", "kl", "--band", "wide"], "'ci', 'std'"),
                                        (["collect", "kl", "--poll", "-1"], "> 0"),
                                        (["collect", "kl", "--timeout", "soon"], "> 0")])
def test_a_bad_option_value_names_the_option_the_value_and_what_is_valid(argv, valid, capsys):
    rc, _, err = grpolab(capsys, *argv)
    assert rc == 2 and err.startswith(f"usage: grpolab {argv[0]} ") and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert argv[-2] in last and repr(argv[-1]) in last and valid in last


def test_overrides_after_an_option_are_kept_in_order(capsys):
    rc, out, _ = grpolab(capsys, "config", "seed=1", "--cfg", "job", "seed=2", "algorithm=gspo")
    assert rc == 0
    cfg = yaml.safe_load(out)
    assert cfg["seed"] == 2 and cfg["algorithm"]["loss"] == "gspo"
