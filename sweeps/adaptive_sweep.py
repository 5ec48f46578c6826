"""``grpolab sweep --until-resolved --max-seeds N [--seed-step K] [--metric M]``: seeds in rounds.

Round 1 runs the declared seeds of every cell. After each round the table's rule
(``analysis.sequential``: Bonferroni over the planned looks, Holm within a look) decides which
comparisons with the baseline cell are resolved; the next round adds the next K seeds to every
unresolved cell and to the baseline (pairing needs the baseline's seed), up to N seeds per cell.

The sweep dir stays its plan's: round 1 is the command's own plan, and each later round is an
``--append`` of that round's runs to ``sweep.json`` (its history keeps one entry per round). The
design (metric, seeds, N, K, baseline) is fixed in ``adaptive.json`` before the first look, and a
re-run with another design is refused: changing the plan after seeing the data would void the
rule. Every decision is recomputed from the records, so re-running the same command (after a
Ctrl-C, a failure, or on a finished sweep) replays the rounds, skips the completed runs and
continues where it stopped, never running a seed twice.
"""
from __future__ import annotations

import json
import shlex
import sys
import time

from trainer.knobs import ConfigError
from trainer.run_record import atomic_write_json

DEFAULT_METRIC = "final_eval_accuracy"
SUMMARY_METRICS = ("final_eval_accuracy", "best_eval_accuracy", "final_reward", "final_response_length",
                   "wall_time_s", "warmstart_eval_accuracy")


def _count_flag(flag: str, text):
    """``--max-seeds`` / ``--seed-step``: an integer >= 1, else one line naming the flag and the value."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{flag} {text}: must be an integer >= 1")
    return value


def refuse_bad_flags(args) -> None:
    """One line naming the flag and what is valid, before anything is composed."""
    args.max_seeds = _count_flag("--max-seeds", args.max_seeds)
    args.seed_step = _count_flag("--seed-step", args.seed_step)
    if not args.until_resolved:
        for flag, value in (("--max-seeds", args.max_seeds), ("--seed-step", args.seed_step),
                            ("--metric", args.metric)):
            if value is not None:
                raise ConfigError(f"{flag} {value}: only with --until-resolved (seeds added in rounds)")
        return
    if args.max_seeds is None:
        raise ConfigError("--until-resolved needs --max-seeds N, the most seeds a cell may get: the rule splits "
                          "α over the looks that N allows")
    if args.append or args.detach:
        flag = "--append" if args.append else "--detach"
        raise ConfigError(f"{flag}: not with --until-resolved, which extends its own plan round by round and waits "
                          "for each round's table")
    from analysis.history import is_history_metric

    metric = args.metric or DEFAULT_METRIC
    if metric not in SUMMARY_METRICS and not is_history_metric(metric):
        raise ConfigError(f"--metric {metric}: not a run metric; valid: {', '.join(SUMMARY_METRICS)} or a history "
                          "metric (final_pass@k, mean:diag/lld_mean)")


def seed_overrides(overrides: list[str], seeds: list[int]) -> list[str]:
    """``overrides`` with the seeds given as ``seed=a,b,c`` (any seed= or sweep.seeds= replaced)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("seed", "sweep.seeds")]
    return [*kept, "seed=" + ",".join(map(str, seeds))]


def _cell(run) -> tuple:
    return tuple(sorted((k, json.dumps(v, default=str)) for k, v in run.swept.items() if k != "seed"))


def _label(run) -> str:
    return ",".join(f"{k}={v}" for k, v in run.swept.items() if k != "seed") or run.name


def _plan_cell(plan, values: dict) -> tuple:
    """The plan's cell whose swept values are ``values`` (as the table groups them)."""
    from analysis.cells import same_value

    for run in plan.runs:
        if all(same_value(run.swept.get(k), v) for k, v in values.items()):
            return _cell(run)
    raise ValueError(f"no cell of the plan has {values}")


def _design(plan, args):
    from analysis.sequential import AdaptiveDesign

    cells = list(dict.fromkeys(_cell(r) for r in plan.runs))
    if len(cells) < 2:
        raise ConfigError("--until-resolved: the grid has one cell, so there is no comparison with a baseline; "
                          "sweep at least one key (variant=grpo,ar)")
    axis = dict(plan.grid.axes).get("seed")
    declared = [int(s) for s in axis] if axis else [int(plan.runs[0].cfg.seed)]
    if args.max_seeds < len(declared):
        raise ConfigError(f"--max-seeds {args.max_seeds}: fewer than the {len(declared)} seeds declared "
                          f"({','.join(map(str, declared))}); give at least {len(declared)}")
    step = args.seed_step or len(declared)
    baseline = {k: v for k, v in plan.runs[0].swept.items() if k != "seed"}
    return AdaptiveDesign(args.metric or DEFAULT_METRIC, declared, args.max_seeds, step, baseline=baseline)


def _recorded_design(plan, design):
    """The sweep's recorded design, or ``design`` when there is none yet; another design is refused."""
    from analysis.sequential import ADAPTIVE_FILE, read_design

    path = plan.sweep_dir / ADAPTIVE_FILE
    old = read_design(plan.sweep_dir) if path.exists() else None
    if path.exists() and old is None:
        raise ConfigError(f"{path}: not a design this grpolab reads, so the looks already made are unknown; move "
                          "the sweep dir aside, or use a new sweep.id")
    if old is not None and not old.same_plan(design):
        raise ConfigError(f"{path}: this sweep's seeds are added by another design (--metric {old.metric}, "
                          f"--max-seeds {old.max_seeds}, --seed-step {old.step}, seeds "
                          f"{','.join(map(str, old.declared))}); re-run it with those, or use a new sweep.id")
    return design if old is None else old


def _round(overrides, cells, command, append: bool, look: int, design):
    """Plan, claim and run one round: the ``cells`` (None: all) at the look's seeds. The exit code
    when it stopped on a signal, else the round's plan."""
    from sweeps.plan import make_plan
    from sweeps.plan_owner import read_existing, reconcile, write
    from trainer.locks import sweep_lock

    plan = make_plan(overrides)
    if cells is not None:
        plan.runs = [r for r in plan.runs if _cell(r) in cells]
    launcher = plan.runs[0].cfg.launcher.name.value
    with sweep_lock(plan.sweep_dir):
        ownership = reconcile(plan, command, read_existing(plan), append)
        write(plan, ownership)
        from analysis.sequential import ADAPTIVE_FILE

        if not (plan.sweep_dir / ADAPTIVE_FILE).exists():  # the design, fixed once the plan is this sweep's
            atomic_write_json(plan.sweep_dir / ADAPTIVE_FILE, design.to_json())
        plan.order = {e["name"]: i for i, e in enumerate(ownership.plan["runs"])}  # run_meta.plan_index
        if launcher != "local":
            from sweeps.launch_slurm import submit_slurm

            submit_slurm(plan)
    print(f"sweep {plan.sweep_id} round {look}: {len(plan.runs)} runs ({len(plan.to_run)} to run, "
          f"{len(plan.runs) - len(plan.to_run)} completed or running) -> {plan.sweep_dir}", flush=True)
    if launcher == "local":
        from sweeps.launch_local import launch_local

        result = launch_local(plan)
        if result.signum is not None:
            from trainer.secrets import redact_overrides

            print(f"sweep {plan.sweep_id}: stopped by {result.stopped_by} in round {look}. Continue with: "
                  f"{shlex.join(redact_overrides(command))}", file=sys.stderr)
            return 128 + result.signum
        return plan
    from sweeps.status import sweep_status

    while not all(c.ended for c in sweep_status(plan.sweep_dir)):  # launcher=slurm: wait for the round
        time.sleep(5.0)
    return plan


def run_until_resolved(args, command: list[str], finish) -> int:
    """The rounds; then ``finish(sweep_dir, {run: state} not completed)`` writes the table."""
    from analysis.sequential import ADAPTIVE_FILE, decide
    from sweeps.plan import make_plan
    from sweeps.preflight import preflight

    first = make_plan(args.overrides)
    preflight(r.cfg for r in first.runs)
    design = _design(first, args)
    plan_seeds = ", ".join(str(len(design.seeds_at(k))) for k in range(1, design.looks + 1))
    headline = (f"sweep {first.sweep_id}: until resolved on {design.metric}: at most {design.looks} rounds (seeds "
                f"per cell {plan_seeds}); each look tests at α/{design.looks}")
    if args.dry_run:
        _recorded_design(first, design)
        print(f"dry run: {headline}; round 1 would run {len(first.to_run)} of its {len(first.runs)} runs "
              f"({len(set(map(_cell, first.runs)))} cells); nothing was launched")
        return 0
    design = _recorded_design(first, design)  # written by round 1, once the plan is claimed
    print(headline, file=sys.stderr)
    labels = {_cell(r): _label(r) for r in first.runs}
    base_cell = _cell(first.runs[0])
    cells, look = None, 1
    while True:
        out = _round(seed_overrides(args.overrides, design.seeds_at(look)), cells, command, look > 1, look, design)
        if isinstance(out, int):
            return out
        plan = out
        open_cells = [_plan_cell(first, c) for c in decide(plan.sweep_dir, design, look)]
        design.looks_done = design.looks_done[:look - 1] + [
            {"look": look, "seeds": design.seeds_at(look), "unresolved": [labels.get(c, str(c)) for c in open_cells]}]
        atomic_write_json(plan.sweep_dir / ADAPTIVE_FILE, design.to_json())
        n_cmp = len(labels) - 1
        if not open_cells:
            print(f"round {look}: all {n_cmp} comparisons resolved", file=sys.stderr)
            break
        if look == design.looks:
            print(f"round {look}: {len(open_cells)} of {n_cmp} comparisons unresolved at --max-seeds "
                  f"{design.max_seeds}; they stay unresolved", file=sys.stderr)
            break
        added = [s for s in design.seeds_at(look + 1) if s not in design.seeds_at(look)]
        print(f"round {look + 1}: {len(open_cells)} of {n_cmp} comparisons unresolved; adding seeds "
              f"{','.join(map(str, added))} to cells {'; '.join(labels[c] for c in open_cells)} and the baseline "
              f"{labels[base_cell]}", file=sys.stderr, flush=True)
        cells = {*open_cells, base_cell}
        look += 1
    from sweeps.status import CellState, sweep_status

    return finish(plan.sweep_dir, {c.name: str(c.state) for c in sweep_status(plan.sweep_dir)
                                    if c.state != CellState.completed})
