"""The ``grpolab`` command: train one run, sweep a grid, print tables.

    grpolab train [overrides...]             one run, in this process
    grpolab sweep [-m] [overrides...]        every cell of a grid, then the ablation table
    grpolab table <sweep_dir> [...]          the ablation table of a sweep's run records
    grpolab config [overrides...]            print the composed, validated config

Overrides use Hydra's grammar (``algorithm.kl.coef=0,0.05``, ``algorithm=gspo``); see docs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from trainer.config import ConfigError


def _cmd_config(args) -> int:
    import yaml

    from sweeps.compose import compose
    from trainer.config import config_hash, to_dict

    cfg = compose(args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    print(f"# config hash: {config_hash(cfg)}")
    _print_warnings([cfg])
    return 0


def _print_warnings(cfgs) -> None:
    """Each distinct warning once, with how many cells it concerns (stderr, before anything runs)."""
    from trainer.config import config_warnings

    counts: dict[str, int] = {}
    for cfg in cfgs:
        for w in config_warnings(cfg):
            counts[w] = counts.get(w, 0) + 1
    for w, n in counts.items():
        suffix = f" [{n} of {len(cfgs)} cells]" if len(cfgs) > 1 else ""
        print(f"warning: {w}{suffix}", file=sys.stderr)


def _cmd_train(args) -> int:
    from sweeps.compose import compose
    from trainer.run import run_training

    cfg = compose(args.overrides)
    _print_warnings([cfg])
    run_dir = Path(args.run_dir or Path(cfg.paths.output_root) / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    summary = run_training(cfg, run_dir, {"overrides": args.overrides})
    print(f"run record: {run_dir}  status: {summary['status']}")
    return 0 if summary["status"] == "completed" else 1


def _cmd_sweep(args) -> int:
    from analysis.table import render_table
    from sweeps.launch_local import launch_local
    from sweeps.plan import make_plan, write_plan

    plan = make_plan(args.overrides)
    skipped = len(plan.runs) - len(plan.to_run)
    print(f"sweep {plan.sweep_id}: {len(plan.runs)} runs over {plan.grid.keys} "
          f"({len(plan.to_run)} to run, {skipped} already completed) -> {plan.sweep_dir}")
    _print_warnings([r.cfg for r in plan.runs])
    if args.dry_run:
        for r in plan.runs:
            print(f"  {r.name} [{r.status}] {' '.join(r.overrides)}")
        return 0
    write_plan(plan, ["grpolab", "sweep", *args.overrides])
    statuses = launch_local(plan)
    failed = {n: s for n, s in statuses.items() if s != "completed"}
    table = render_table(plan.sweep_dir)
    (plan.sweep_dir / "table.md").write_text(table + "\n")
    print(f"\nAblation table ({plan.sweep_dir / 'table.md'}):\n")
    print(table)
    if failed:
        print(f"\n{len(failed)} runs did not complete: {failed}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "table":
        from analysis.table import main as table_main

        return table_main(argv[1:])
    parser = argparse.ArgumentParser(prog="grpolab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="one run in this process")
    p.add_argument("--run-dir", help="where the run record goes (default outputs/runs/<time>)")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("sweep", help="run a grid of cells, then print the ablation table")
    p.add_argument("-m", "--multirun", action="store_true", help="accepted for Hydra familiarity; sweeps always expand")
    p.add_argument("--dry-run", action="store_true", help="compose and validate every cell, list them, run nothing")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("config", help="print the composed config")
    p.add_argument("overrides", nargs="*")
    sub.add_parser("table", help="ablation table of a sweep dir (see grpolab table --help)")
    args = parser.parse_args(argv)
    try:
        return {"train": _cmd_train, "sweep": _cmd_sweep, "config": _cmd_config}[args.command](args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
