"""The ``grpolab`` command: train one run, sweep a grid, print tables.

    grpolab train [overrides...]             one run, in this process
    torchrun --nproc_per_node N -m sweeps.cli train engine=deepspeed_zero2 ...
                                             one run over N ranks (rank 0 writes the record)
    grpolab sweep [-m] [--append] [overrides...]
                                             every cell of a grid, then the ablation table
    grpolab sweep --detach launcher=slurm .. submit the grid as one SLURM job array and return
    grpolab sweep --until-resolved --max-seeds N [--seed-step K] [overrides...]
                                             seeds in rounds where Δ vs the baseline is open (docs/analysis.md)
    grpolab status <sweep>                   each cell's state and the sweep's progress
    grpolab collect <sweep>                  wait for every cell to end, then the ablation table
    grpolab tune [overrides...]              Optuna search over tune.space (docs/tracking.md)
    grpolab table <sweep> [...]              the ablation table of a sweep's run records
    grpolab plot <sweep> [...]               learning curves and diagnostics plots (PNG)
    grpolab report <sweep> [...]             one self-contained HTML report (tables and plots)
    grpolab aggregate <sweep> --over task    IQM, P(improvement), performance profiles across tasks
    grpolab power <sweep> --delta D [...]    per comparison of the table: MDE, power and seeds for Δ = D
    grpolab reproduce <paper>|all [--quick]  a paper's claims, measured, with verdicts (docs/reproductions.md)
                                             (the analysis commands also read wandb://ENTITY/PROJECT/SWEEP_ID)
    grpolab config [overrides...]            print the composed, validated config
    grpolab config --groups                  every config group, its options and what each is
    grpolab train|sweep|config --cfg job|all / --info
                                             Hydra's habits: print the config / groups and defaults, exit

Every command takes --dry-run, and its --help ends with examples. A sweep is named by its dir, or by
its sweep id (tune study name) under --root (default outputs).

Overrides use Hydra's grammar (``algorithm.kl.coef=0,0.05``, ``algorithm=gspo``); see docs/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shlex
import sys
from pathlib import Path

# Module level: only what stays light (no torch, no Hydra), so `grpolab status` and `table` start fast;
# each command imports the heavy parts it needs.
from sweeps.cli_args import parse
from sweeps.job_env import private_files
from trainer.knobs import ConfigError
from trainer.locks import RunBusy
from trainer.run_record import RUNS_DIR, SWEEP_PLAN_FILE, RunStatus, SweepPaths, atomic_write_text
from trainer.sweep_names import find_sweep


def _cmd_config(args) -> int:
    from sweeps.cli_hydra import config_text, print_groups, print_info, refuse_sweeps
    from sweeps.compose import compose

    if args.groups:
        print_groups()
        return 0
    refuse_sweeps("config", args.overrides)
    if args.info:
        print_info(args.overrides)
        return 0
    cfg = compose(args.overrides)
    print(config_text(cfg, args.overrides, args.cfg or "job"), end="")
    _print_warnings([cfg])
    return 0


def _hydra_habit(args) -> bool:
    """``--cfg`` / ``--info`` of train and sweep: print what Hydra would, run nothing (True when done)."""
    from sweeps.cli_hydra import config_text, print_info

    if args.info:
        print_info(args.overrides)
        return True
    if not args.cfg:
        return False
    if args.command == "train":
        from sweeps.compose import compose

        print(config_text(compose(args.overrides), args.overrides, args.cfg), end="")
        return True
    from sweeps.plan import make_plan

    for i, run in enumerate(make_plan(args.overrides).runs):  # one YAML document per cell
        print(("---\n" if i else "") + f"# cell {run.name}: {' '.join(run.overrides)}")
        print(config_text(run.cfg, run.overrides, args.cfg), end="")
    return True


def _print_warnings(cfgs) -> None:
    """Each distinct warning once, with how many cells it concerns (stderr, before anything runs)."""
    from trainer.validation import config_warnings

    counts: dict[str, int] = {}
    for cfg in cfgs:
        for w in config_warnings(cfg):
            counts[w] = counts.get(w, 0) + 1
    for w, n in counts.items():
        suffix = f" [{n} of {len(cfgs)} cells]" if len(cfgs) > 1 else ""
        print(f"warning: {w}{suffix}", file=sys.stderr)


def _cmd_train(args) -> int:
    from sweeps.cli_hydra import refuse_sweeps
    from sweeps.compose import compose
    from sweeps.job import StopFlag
    from sweeps.preflight import preflight
    from trainer import distributed
    from trainer.identity import config_hash, run_meta
    from trainer.run import run_training, start_ranks

    refuse_sweeps("train", args.overrides, args.multirun)
    if _hydra_habit(args):
        return 0
    if args.dry_run:
        cfg = compose(args.overrides)
        preflight([cfg])
        _print_warnings([cfg])
        where = args.run_dir or f"{Path(cfg.paths.output_root) / RUNS_DIR}/<time of the start>"
        print(f"dry run: the config is valid (hash {config_hash(cfg)}); the run record would go to {where}")
        return 0
    # INT/TERM/USR2/HUP: checkpoint at the next step boundary, end preempted; a second INT: now
    stop = StopFlag(second_int_interrupts=True)
    stop.install()
    cfg = compose(args.overrides)
    preflight([cfg])
    # Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 names the run and writes its record.
    main = start_ranks(cfg) == 0
    if main:
        _print_warnings([cfg])
    run_dir = Path(args.run_dir or Path(cfg.paths.output_root) / RUNS_DIR / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = distributed.broadcast_object(run_dir)
    summary = run_training(cfg, run_dir, run_meta(cfg, run_dir, overrides=args.overrides), should_stop=stop)
    if main:
        print(f"run record: {run_dir}  status: {summary.status}")
        if summary.status != RunStatus.completed:
            print("continue with: " + shlex.join(["grpolab", "train", "--run-dir", str(run_dir), *args.overrides]))
    if summary.status == RunStatus.preempted and stop.signum is not None:
        return 128 + stop.signum  # the shell's convention for a command ended by a signal (130 for INT)
    return 0 if summary.status == RunStatus.completed else 1


def _cmd_sweep(args) -> int:
    from sweeps.adaptive_sweep import refuse_bad_flags, run_until_resolved
    from sweeps.plan import PlanStatus, make_plan
    from sweeps.plan_owner import read_existing, reconcile, write
    from sweeps.preflight import preflight
    from trainer.locks import sweep_lock
    from trainer.secrets import redact_overrides

    if _hydra_habit(args):
        return 0
    refuse_bad_flags(args)
    if args.until_resolved:  # rounds of seeds (docs/analysis.md#adaptive-seeds)
        flags = ["--until-resolved", "--max-seeds", str(args.max_seeds)] + \
            [f for flag, v in (("--seed-step", args.seed_step), ("--metric", args.metric)) if v for f in (flag, str(v))]
        return run_until_resolved(args, ["grpolab", "sweep", *flags, *args.overrides], _finish)
    plan = make_plan(args.overrides)
    preflight(r.cfg for r in plan.runs)  # every check the submit runs, before anything is written
    launcher = plan.runs[0].cfg.launcher.name.value if plan.runs else "local"
    if launcher == "local" and args.detach:
        raise ConfigError("--detach needs launcher=slurm (local cells are child processes of this command)")
    command = ["grpolab", "sweep", *(["--append"] if args.append else []), *args.overrides]
    # the plan lock: sweep.json (and jobs.json on SLURM) have one writer; a second invocation waits here
    with sweep_lock(plan.sweep_dir) if not args.dry_run or plan.sweep_dir.exists() else contextlib.nullcontext():
        ownership = reconcile(plan, command, read_existing(plan), args.append)
        live = [r.name for r in plan.runs if r.status == PlanStatus.live]
        skipped = len(plan.runs) - len(plan.to_run) - len(live)
        held = len(ownership.plan["runs"])
        print(f"sweep {plan.sweep_id}: {_count(len(plan.runs), 'run')} over {', '.join(plan.grid.keys) or 'no key'} "
              f"({len(plan.to_run)} to run, {skipped} already completed"
              + (f", {len(live)} running in another process: left to it" if live else "") + f") -> {plan.sweep_dir}")
        if ownership.kind != "new":
            verb = {"resume": "resumes", "append": "appends to"}[ownership.kind]
            if args.dry_run:
                verb = {"resume": "would resume", "append": "would append to"}[ownership.kind]
            print(f"this command {verb} the sweep's plan ({held} cells, {len(ownership.plan['history'])} "
                  "invocations in its history)")
        _print_warnings([r.cfg for r in plan.runs])
        _print_tracker(plan)
        if args.dry_run:
            for r in plan.runs:
                print(f"  {r.name} [{r.status}] {' '.join(redact_overrides(r.overrides))}")
            return 0
        write(plan, ownership)
        if launcher != "local":
            from sweeps.launch_slurm import submit_slurm

            report = submit_slurm(plan)
    if launcher == "local":
        from sweeps.launch_local import launch_local

        result = launch_local(plan)
        if result.signum is not None:
            left = len(plan.to_run) - len(result.statuses)
            print(f"sweep {plan.sweep_id}: stopped by {result.stopped_by}; its running cells stopped at a step "
                  f"boundary, {left} not started. Resume with: {shlex.join(redact_overrides(command))}",
                  file=sys.stderr)
            return 128 + result.signum
        return _finish(plan.sweep_dir, {n: str(s) for n, s in result.statuses.items() if s != RunStatus.completed})
    print(f"sweep {plan.sweep_id}: {report.describe()}")
    if report.submitted:
        arrays = sorted({j.split("_")[0] for j in report.submitted.values()})
        print(f"job array {', '.join(arrays)}; logs in {plan.paths.logs}")
    if args.detach:
        print(f"follow with: grpolab status {plan.sweep_dir}    table when done: grpolab collect {plan.sweep_dir}")
        print(f"sweep id: {plan.sweep_id}")
        return 0
    return _collect(plan.sweep_dir, timeout_s=None, poll_s=5.0)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _not_completed(failed: dict) -> str:
    """``2 runs did not complete: a1_s0 (failed), a1_s1 (preempted)``."""
    verb = "run did" if len(failed) == 1 else "runs did"
    return f"{len(failed)} {verb} not complete: " + ", ".join(f"{name} ({state})" for name, state in failed.items())


def _finish(sweep_dir: Path, failed: dict) -> int:
    """Write and print the ablation table; name the cells that did not complete."""
    from analysis.table import render_table

    path = SweepPaths(sweep_dir).table
    try:
        table = render_table(sweep_dir)
    except ValueError as e:  # no run wrote a record (every cell died before it began)
        print(f"no ablation table: {e}; {_not_completed(failed)}", file=sys.stderr)
        return 1
    atomic_write_text(path, table + "\n")
    print(f"\nAblation table ({path}):\n")
    print(table)
    if failed:
        print(f"\n{_not_completed(failed)}", file=sys.stderr)
    where = shlex.quote(str(sweep_dir))
    print(f"\ntable: {path}   plots: grpolab plot {where}   report: grpolab report {where}")
    return 1 if failed else 0


def _print_tracker(plan) -> None:
    """With tracker=wandb, one line before anything runs: online or offline, where the files go,
    and the command that uploads offline runs."""
    t = plan.runs[0].cfg.tracker if plan.runs else None
    if t is None or getattr(t.name, "value", t.name) != "wandb":
        return
    from trainer.tracking import WANDB_DIR, mode_line, resolve_mode

    requested = getattr(t.mode, "value", t.mode)
    runs = "offline-run-*" if resolve_mode(requested, t.project) == "offline" else "run-*"
    files = shlex.quote(str(plan.paths.runs)) + f"/*/{WANDB_DIR}/{runs}"
    print(f"sweep {plan.sweep_id}: " + mode_line(requested, t.project, t.entity, files))


def _sweep_dir(arg: str, root: str) -> Path:
    """A sweep dir (grid or tune) given as a path, or as a sweep id / study name under ``root``."""
    try:
        sweep_dir = find_sweep(arg, root)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    paths = SweepPaths(sweep_dir)
    if not paths.plan.is_file() and not paths.runs.is_dir():
        raise ConfigError(f"{arg}: a directory, but no sweep (no {SWEEP_PLAN_FILE}, no {RUNS_DIR}/ in it)")
    return sweep_dir


def _dry_run_sweep(command: str, sweep_dir: Path, cells) -> int:
    paths = SweepPaths(sweep_dir)
    plan = paths.plan if paths.plan.is_file() else f"{paths.runs}/ (no {SWEEP_PLAN_FILE}: a tune study's runs)"
    print(f"dry run: grpolab {command} would read {plan} and the records of {len(cells)} cells under {paths.runs}"
          + (f"; when they have ended, write {paths.table}" if command == "collect" else ""))
    return 0


def _cmd_status(args) -> int:
    from sweeps.status import format_status, sweep_status

    sweep_dir = _sweep_dir(args.sweep, args.root)
    cells = sweep_status(sweep_dir)
    if args.dry_run:
        return _dry_run_sweep("status", sweep_dir, cells)
    print(format_status(sweep_dir.name, cells))
    return 0


def _collect(sweep_dir: Path, timeout_s: float | None, poll_s: float) -> int:
    """Wait until every cell has ended (progress on stderr every 30 s), then build the table."""
    import time

    from sweeps.status import CellState, format_status, sweep_status

    start = last = time.time()
    while True:
        cells = sweep_status(sweep_dir)
        if all(c.ended for c in cells):
            break
        if timeout_s is not None and time.time() - start > timeout_s:
            print(format_status(sweep_dir.name, cells), file=sys.stderr)
            print(f"collect: timed out after {timeout_s:.0f} s; the sweep keeps running", file=sys.stderr)
            return 3
        if time.time() - last > 30:
            last = time.time()
            print(format_status(sweep_dir.name, cells).splitlines()[0], file=sys.stderr, flush=True)
        time.sleep(poll_s)
    print(format_status(sweep_dir.name, cells))
    return _finish(sweep_dir, {c.name: str(c.state) for c in cells if c.state != CellState.completed})


def _cmd_collect(args) -> int:
    sweep_dir = _sweep_dir(args.sweep, args.root)
    if args.dry_run:
        from sweeps.status import sweep_status

        return _dry_run_sweep("collect", sweep_dir, sweep_status(sweep_dir))
    return _collect(sweep_dir, args.timeout, args.poll)


def _cmd_tune(args) -> int:
    from optuna.trial import TrialState

    from sweeps.cli_hydra import refuse_sweeps
    from sweeps.compose import compose
    from sweeps.tune_launch import plan_tune, tune_from_config

    refuse_sweeps("tune", args.overrides)
    if args.dry_run:
        print(plan_tune(compose(args.overrides), args.overrides))
        return 0
    study = tune_from_config(compose(args.overrides), args.overrides)
    return 0 if any(t.state == TrialState.COMPLETE for t in study.get_trials()) else 1


ANALYSIS = {"table": "analysis.table", "plot": "analysis.plots", "report": "analysis.report",
            "aggregate": "analysis.aggregate_cli", "power": "analysis.power_cli", "reproduce": "reproduce.cli"}
COMMANDS = {"tune": _cmd_tune, "train": _cmd_train, "sweep": _cmd_sweep, "config": _cmd_config,
            "status": _cmd_status, "collect": _cmd_collect}


def _show_record_warnings() -> None:
    """A damaged record file is one plain line on stderr (``warning: <file>: <what>; <then>``)."""
    import warnings

    from trainer.record_check import RecordWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RecordWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    """Every subcommand, with a closed stdout (``grpolab status ... | head``) ending quietly: exit
    141 (128 + SIGPIPE, as a shell reports a command killed by it), no traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a reader that left is noticed inside this try
        return code
    except BrokenPipeError:
        import os
        import signal

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own exit flush fails quietly
        return 128 + signal.SIGPIPE


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _show_record_warnings()
    if argv and argv[0] in ANALYSIS:  # their own argument parsers
        import importlib

        return importlib.import_module(ANALYSIS[argv[0]]).main(argv[1:])
    args = parse(argv, __doc__)
    try:
        with private_files():  # records, checkpoints, W&B's files, pickles: the owner's only (docs/run-record.md)
            return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (RunBusy, TimeoutError) as e:  # another process owns what this command would write
        print(f"busy: {e}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:  # before a StopFlag was installed, or a second Ctrl-C of `grpolab train`
        print(f"grpolab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
