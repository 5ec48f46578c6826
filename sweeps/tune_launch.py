"""``grpolab tune``: the real trainer as ``sweeps.tune``'s ``launch_fn``, and the study a config describes.

Each (trial, seed) is one run record under ``<root>/runs/t<trial>_s<seed>``, run by ``TuneCellJob``
in this process or through a submitit executor (a LocalExecutor process, or a SLURM job that
reports to the study's storage itself); its objectives are read back from the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna

from sweeps.tune import DEFAULT_DB, TrialContext, TrialReporter, parse_space, run_study, to_overrides
from trainer.run_record import RunRecord, RunStatus, Summary, SweepPaths, tune_root


# ---------------------------------------------------------------- one cell
@dataclass
class TuneCellResult:
    summary: Summary
    pruned_at: Optional[int] = None  # the step the trial was pruned at, if it was


@dataclass
class TuneCellJob:
    """One seed of one trial, run by the trainer (in this process or as a submitit job), with a
    ``TrialReporter`` so the run stops when the trial is pruned. ``labels``: ``run_meta``'s keyword
    arguments (sweep id, swept values, tune position)."""
    overrides: list
    run_dir: str
    labels: dict
    ctx: TrialContext

    def __call__(self) -> TuneCellResult:
        from sweeps.compose import compose
        from sweeps.job import slurm_job_id
        from trainer.identity import run_meta
        from trainer.run import run_training

        cfg = compose(self.overrides)
        reporter = TrialReporter(self.ctx)
        meta = run_meta(cfg, self.run_dir, **self.labels)
        meta.slurm_job_id = slurm_job_id()  # None off SLURM, as for sweep cells
        summary = run_training(cfg, Path(self.run_dir), meta, reporter=reporter)
        return TuneCellResult(summary, reporter.pruned_at if summary.status == RunStatus.pruned else None)


@dataclass
class TrainerLaunch:
    """``launch_fn`` running the real trainer: each (trial, seed) is a run record under
    ``<root>/runs/t<trial>_s<seed>``; objectives are summary keys (``final_eval_accuracy``) or
    metric names (``train/kl``: the mean of its logged values). ``executor``: a submitit executor
    (LocalExecutor, or AutoExecutor/SlurmExecutor for SLURM); None runs in this process."""
    root: str
    objectives: Sequence[str] = ("final_eval_accuracy",)
    executor: Any = None

    def __call__(self, overrides: list, seed: int, ctx: TrialContext):
        run_dir = SweepPaths(Path(self.root)).run(f"t{ctx.trial_number:04d}_s{seed}")
        labels = {"sweep_id": ctx.study_name, "swept": {**ctx.params},
                  "tune": {"trial": ctx.trial_number, "seed_index": ctx.seed_index}}
        job = TuneCellJob([*overrides, f"seed={seed}"], str(run_dir), labels, ctx)
        out = job() if self.executor is None else self.executor.submit(job).result()
        if out.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {out.pruned_at}")
        if out.summary.status != RunStatus.completed:
            raise RuntimeError(f"run {run_dir} ended {out.summary.status}: {out.summary.error}")
        headline = out.summary.headline()
        record = RunRecord(run_dir, writable=False)
        rows = record.metrics()
        values = []
        for name in self.objectives:
            if name in headline:
                values.append(float(headline[name]))
            else:
                seen = [r[name] for r in rows if r.get(name) is not None]
                if not seen:
                    raise KeyError(f"tune objective {name!r}: in neither {record.summary_path.name} nor "
                                   f"{record.metrics_path.name} of {run_dir}")
                values.append(sum(seen) / len(seen))
        return values


# ---------------------------------------------------------------- `grpolab tune`
def study_name(cfg) -> str:
    import datetime as dt

    return cfg.tune.study_name or cfg.sweep.id or dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def checked_space(cfg) -> list:
    """``cfg.tune.space`` parsed; a bad spec is a ``ConfigError`` naming the key (before anything runs)."""
    from trainer.knobs import ConfigError

    try:
        return parse_space(dict(cfg.tune.space))
    except ValueError as e:
        raise ConfigError(f"tune.space: {e}") from None


def plan_tune(cfg, overrides: list[str]) -> str:
    """``grpolab tune --dry-run``: the space parsed and each end of it composed and validated as a
    trial would be, and the trials planned; nothing is written (the study is not created)."""
    from sweeps.compose import compose

    t = cfg.tune
    params = checked_space(cfg)
    base = [o for o in overrides if not o.startswith(("tune.", "+tune.", "++tune."))]
    for end in (0, -1):  # a trial at the lower ends, one at the upper ends (the first/last choices)
        compose([*base, *to_overrides({p.key: (p.low, p.high)[end] if p.kind != "cat" else p.choices[end]
                                       for p in params})])
    seeds = list(cfg.sweep.seeds)
    root = tune_root(cfg.paths.output_root, study_name(cfg))
    lines = [f"dry run: study {study_name(cfg)}: {t.n_trials} trials × {len(seeds)} seeds {seeds} = "
             f"{t.n_trials * len(seeds)} runs of {cfg.train.steps} steps, {t.workers} at a time, "
             f"{', '.join(f'{o} ({d})' for o, d in zip(t.objectives, t.directions))} -> {root}",
             f"  storage: {t.storage or f'sqlite:///{root}/{DEFAULT_DB}'}; sampler {t.sampler or 'default'}, "
             f"pruner {t.pruner or 'none'}"]
    lines += [f"  {p.key}: " + (f"{p.kind} in [{p.low}, {p.high}]{' (log)' if p.log else ''}" if p.kind != "cat"
                                 else f"one of {', '.join(map(str, p.choices))}") for p in params]
    return "\n".join(lines)

def trials_table(study: optuna.Study, objectives: Sequence[str], digits: int = 4) -> str:
    """Every trial of ``study``, best first in the (first) objective's direction, unfinished ones last:
    trial number, state, objective values and params, floats to ``digits`` significant digits."""
    from sweeps.tune import shown

    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in study.get_trials() if t.values]
    done.sort(key=lambda t: -t.values[0] if maximize else t.values[0])
    trials = done + [t for t in study.get_trials() if not t.values]
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    head = ["trial", "state", *objectives, *keys]
    state = {"FAIL": "failed"}  # as the trial lines say it

    def row(t) -> list[str]:
        values = [shown(v, digits) for v in t.values] if t.values else ["—"] * len(objectives)
        return [str(t.number), state.get(t.state.name, t.state.name.lower()), *values,
                *(shown(t.params[k], digits) if k in t.params else "" for k in keys)]

    rows = [row(t) for t in trials]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])



def tune_from_config(cfg, overrides: list[str], log: Callable = print) -> optuna.Study:
    """``grpolab tune [overrides]``: the study ``cfg.tune`` describes (space, n_trials, objectives,
    directions, sampler, pruner, storage, study_name, workers), seeds from ``cfg.sweep.seeds``, each
    cell run by ``cfg.launcher`` (local: a submitit LocalExecutor process per cell; slurm: one SLURM
    job per cell, so use a journal or RDB storage the nodes can reach). Study and run records go
    under ``<paths.output_root>/tune/<study name>/``."""
    t = cfg.tune
    checked_space(cfg)
    name = study_name(cfg)
    root = tune_root(cfg.paths.output_root, name)
    logs = SweepPaths(root).logs
    launcher = getattr(cfg.launcher.name, "value", cfg.launcher.name)
    if launcher == "local":  # a LocalExecutor per run, logging to logs/<run name>/ (logs.json maps them)
        from sweeps.run_logs import RunLogExecutor

        executor = RunLogExecutor(root)
    elif launcher == "slurm":  # each cell one SLURM job; the job reports to the storage itself
        from sweeps.launch_slurm import make_executor

        executor = make_executor(cfg.launcher, name, logs, None)
    else:
        raise ValueError(f"launcher.name={launcher!r}: must be local or slurm")
    study = run_study([o for o in overrides if not o.startswith("tune.")], dict(t.space), n_trials=t.n_trials,
                      seeds=list(cfg.sweep.seeds), storage=t.storage, study_name=name,
                      directions=list(t.directions), sampler=t.sampler, workers=t.workers,
                      launch_fn=TrainerLaunch(str(root), tuple(t.objectives), executor), pruner=t.pruner,
                      steps_per_seed=cfg.train.steps, default_dir=root, log=log, objectives=tuple(t.objectives))
    states = [s.state.name for s in study.get_trials()]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    log(f"study {name}: {len(states)} trials ({counts}) -> {root}")
    log(trials_table(study, t.objectives))
    from sweeps.tune import shown

    for best in study.best_trials:
        values = ", ".join(f"{k}={shown(v, 4)}" for k, v in zip(t.objectives, best.values))
        log(f"  best trial {best.number}: {values}  {' '.join(to_overrides(best.params))}")
    return study
