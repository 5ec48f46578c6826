"""Running ``grpolab`` in this process, and the sweep dirs the CLI tests read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from analysis.synthetic import write_synthetic_sweep

COMMANDS = ("config", "train", "sweep", "tune", "status", "collect", "table", "plot", "report", "aggregate",
            "power", "reproduce")


def grpolab(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``grpolab ARGV``; argparse's exits are exit codes too."""
    from sweeps.cli import main

    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out, out.err


def examples(capsys, command: str) -> list[list[str]]:
    """The example command lines ending ``grpolab COMMAND --help``, split as a shell would."""
    import shlex

    rc, out, _ = grpolab(capsys, command, "--help")
    assert rc == 0
    text = out.split("\nexamples:\n", 1)[1]
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.startswith("  grpolab ")]


def write_sweeps(root: Path) -> None:
    """Under ``root``: grid sweeps kl (by algorithm.kl.coef), lopti (by variant) and tasks (variant ×
    task) and a tune-shaped dir kl_search (runs t<trial>_s<seed>, meta naming the trial, no plan), 2
    seeds of 4 steps each."""
    write_synthetic_sweep(root / "sweeps" / "kl", axes={"algorithm.kl.coef": [0.0, 0.01]}, seeds=range(2),
                          steps=4, eval_every=2, sweep_id="kl")
    write_synthetic_sweep(root / "sweeps" / "lopti", axes={"variant": ["grpo", "ar"]}, seeds=range(2),
                          steps=4, eval_every=2, sweep_id="lopti")
    write_synthetic_sweep(root / "sweeps" / "tasks", axes={"variant": ["grpo", "ar"], "task": ["arithmetic", "gsm8k"]},
                          seeds=range(2), steps=4, eval_every=2, sweep_id="tasks")
    tune = write_synthetic_sweep(root / "tune" / "kl_search", axes={"algorithm.clip.high": [0.2, 0.25]},
                                 seeds=range(1), steps=4, eval_every=2, sweep_id="kl_search")
    (tune / "sweep.json").unlink()
    for trial, run in enumerate(sorted((tune / "runs").iterdir())):
        meta = json.loads((run / "meta.json").read_text())
        meta["tune"] = {"trial": trial, "seed_index": 0}
        (run / "meta.json").write_text(json.dumps(meta))
        shutil.move(run, run.with_name(f"t{trial:04d}_s0"))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (what a dry run must leave as it was)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
