"""Every subcommand's --help describes each argument and ends with examples that run (with
--dry-run), and README.md's everyday commands are among them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.cli_helpers import COMMANDS, examples, grpolab, tree, write_sweeps

README = Path(__file__).resolve().parents[1] / "README.md"
# what an example reads: the grid and tune commands compose into an empty dir (a dry run writes
# nothing, so a sweep example never meets another's plan); the others read pre-made sweeps
READS_SWEEPS = {"status", "collect", "table", "plot", "report", "aggregate", "power"}


@pytest.fixture(scope="module")
def sweeps_cwd(tmp_path_factory):
    work = tmp_path_factory.mktemp("examples")
    write_sweeps(work / "outputs")
    return work


def _example_params():
    from analysis import aggregate_cli, plots, power_cli, report, table
    from reproduce import cli as reproduce_cli
    from sweeps.cli_args import EXAMPLES

    lines = {**EXAMPLES, "table": table.EXAMPLES, "plot": plots.EXAMPLES, "report": report.EXAMPLES,
             "aggregate": aggregate_cli.EXAMPLES, "power": power_cli.EXAMPLES, "reproduce": reproduce_cli.EXAMPLES}
    return [pytest.param(c, i, id=f"{c}-{i}") for c in COMMANDS for i in range(len(lines[c]))]


def _parser(command: str):
    import importlib

    from sweeps.cli import ANALYSIS
    from sweeps.cli_args import build_parser

    if command in ANALYSIS:  # their own parsers
        return importlib.import_module(ANALYSIS[command]).build_parser()
    return build_parser("")[1][command]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_examples_and_describes_every_argument(command, capsys):
    argvs = examples(capsys, command)
    assert len(argvs) >= 2
    assert all(argv[:2] == ["grpolab", command] for argv in argvs)
    actions = _parser(command)._actions
    assert any(a.dest == "dry_run" for a in actions), f"grpolab {command} has no --dry-run"
    for action in actions:
        assert action.help, f"grpolab {command}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("command,index", _example_params())
def test_each_help_example_runs_with_dry_run(command, index, capsys, tmp_path, sweeps_cwd, monkeypatch):
    argv = examples(capsys, command)[index]
    cwd = sweeps_cwd if command in READS_SWEEPS else tmp_path
    monkeypatch.chdir(cwd)
    before = tree(cwd)
    rc, out, err = grpolab(capsys, command, "--dry-run", *argv[2:])
    assert rc == 0, f"{shlex.join(argv)} --dry-run: exit {rc}\n{out[-2000:]}\n{err[-2000:]}"
    assert "Traceback" not in err
    assert out.strip(), f"{shlex.join(argv)} --dry-run printed nothing"
    assert tree(cwd) == before, f"{shlex.join(argv)} --dry-run wrote files"


def test_readme_everyday_commands_are_help_examples(capsys):
    readme = [shlex.split(line.strip().removeprefix(".venv/bin/"), comments=True)
              for line in README.read_text().splitlines() if line.strip().startswith(".venv/bin/grpolab ")]
    assert len(readme) >= 10
    helped = [argv for c in COMMANDS for argv in examples(capsys, c)]
    missing = [shlex.join(argv) for argv in readme if argv not in helped]
    assert not missing, f"README commands not among the --help examples: {missing}"
