"""Hyper-parameter search with Optuna 5's ask-and-tell: each trial is a cell, replicated over seeds.

    study = create_study(storage, "kl_search", ["maximize"])           # once, before any worker
    run_study(base, {"algorithm.kl.coef": "float:1e-4:1e-1:log"}, n_trials=20, seeds=[0, 1, 2],
              storage=storage, study_name="kl_search", directions=["maximize"], workers=2)

- A worker asks a trial, turns its params into Hydra overrides (``algorithm.kl.coef=0.013``) and
  runs the cell once per seed through ``launch_fn``; the trial's value is the **mean over seeds**
  of each objective (per-seed values are kept in the trial's user attrs ``seed_values``). Seeds are
  a replication axis: a space naming ``seed`` is refused.
- Samplers: TPE (default, one objective) and NSGA-II (several, e.g. eval accuracy vs KL).
- Pruning from inside the job: the trainer calls a ``TrialReporter(step, value) -> should_stop`` at
  its eval steps; the reporter opens the same storage by study name and trial number, so it works
  in another process or on another node (hydra-optuna-sweeper cannot: Hydra issue 1954). Seeds run
  one after another and seed i reports at ``i·(steps+1) + step``: every trial has the same schedule,
  so the pruner compares like with like.
- Storage: ``sqlite:///path.db`` (default), a JournalStorage file (``journal:PATH`` or a path ending
  in ``.journal``/``.log``; use it on a shared filesystem under SLURM), or any SQLAlchemy URL.
  Create the study before starting concurrent workers (two processes creating one SQLite file race).

Space grammar (docs/tracking.md): ``float:LOW:HIGH[:log]``, ``int:LOW:HIGH[:log]``, ``cat:A,B,C``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna

PRUNER_ATTR = "grpolab_pruner"  # study user attr: the pruner spec, so a job can rebuild the same pruner


# ---------------------------------------------------------------- search space
@dataclass(frozen=True)
class Param:
    key: str
    kind: str  # float | int | cat
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))


def _number(text: str, key: str, spec: str, kind: type):
    try:
        return kind(text) if kind is float else int(text)
    except ValueError:
        raise ValueError(f"tune space {key}={spec!r}: {text!r} is not a {kind.__name__}") from None


def _categorical_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def parse_space(space: dict[str, str]) -> list[Param]:
    """Parse ``{key: spec}``; raise ``ValueError`` naming the key, the spec and the valid grammar."""
    grammar = "float:LOW:HIGH[:log], int:LOW:HIGH[:log] or cat:A,B,..."
    params = []
    for key, spec in space.items():
        if key == "seed" or key.endswith(".seed") or key.startswith("sweep.seeds"):
            raise ValueError(f"tune space {key}: seeds are a replication axis (tune seeds=[...]), never searched")
        kind, _, rest = str(spec).partition(":")
        parts = rest.split(":")
        if kind in ("float", "int") and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "log"):
            conv = float if kind == "float" else int
            low, high = _number(parts[0], key, spec, conv), _number(parts[1], key, spec, conv)
            log = len(parts) == 3
            if not low < high or (log and low <= 0):
                raise ValueError(f"tune space {key}={spec!r}: need LOW < HIGH{' and LOW > 0 for log' if log else ''}")
            params.append(Param(key, kind, low, high, log))
        elif kind == "cat" and rest:
            params.append(Param(key, "cat", choices=tuple(_categorical_value(c) for c in rest.split(","))))
        else:
            raise ValueError(f"tune space {key}={spec!r}: must be {grammar}")
    return params


def to_overrides(params: dict[str, Any]) -> list[str]:
    """Hydra overrides for a trial's params: ``algorithm.kl.coef=0.013``, ``batching=query_preserved``."""
    def fmt(v):
        if isinstance(v, bool):
            return str(v).lower()
        if v is None:
            return "null"
        if isinstance(v, float):
            return repr(v)
        return str(v)

    return [f"{k}={fmt(v)}" for k, v in params.items()]


# ---------------------------------------------------------------- storage, study, pruner
def open_storage(storage: Optional[str], default_dir: str | Path = "outputs/tune"):
    """An Optuna storage from a string: None → ``sqlite:///<default_dir>/optuna.db``; ``journal:PATH``
    or a path ending in .journal/.log → JournalStorage file; anything else is an RDB URL."""
    if storage is None:
        Path(default_dir).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{Path(default_dir).resolve() / 'optuna.db'}"
    if not isinstance(storage, str):
        return storage  # already a storage object
    if storage.startswith("journal:") or storage.endswith((".journal", ".log")):
        path = Path(storage.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in storage:
        raise ValueError(f"tune storage={storage!r}: must be sqlite:///PATH, journal:PATH (or *.journal) or an RDB URL")
    return optuna.storages.RDBStorage(storage)


def make_pruner(spec: str | None) -> optuna.pruners.BasePruner:
    """``median[:STARTUP_TRIALS[:WARMUP_STEPS]]`` (default median:2:0), ``percentile:P[:STARTUP[:WARMUP]]``
    or ``none``."""
    spec = spec or "median:2:0"
    name, *args = spec.split(":")
    try:
        nums = [float(a) for a in args]
        if name == "none":
            return optuna.pruners.NopPruner()
        if name == "median":
            startup, warmup = (list(map(int, nums)) + [2, 0][len(nums):])[:2]
            return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
        if name == "percentile" and nums:
            p, rest = nums[0], list(map(int, nums[1:]))
            startup, warmup = (rest + [2, 0][len(rest):])[:2]
            return optuna.pruners.PercentilePruner(p, n_startup_trials=startup, n_warmup_steps=warmup)
    except ValueError:
        pass
    raise ValueError(f"tune pruner={spec!r}: must be median[:STARTUP[:WARMUP]], percentile:P[:STARTUP[:WARMUP]] or none")


def make_sampler(name: str, seed: Optional[int] = None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"tune sampler={name!r}: must be tpe (default), nsga2 (multi-objective) or random")


def create_study(storage, study_name: str, directions: Sequence[str], *, pruner: str | None = None,
                 sampler: str | None = None, sampler_seed: Optional[int] = None) -> optuna.Study:
    """Create (or load) the study; do this once before any worker starts. ``sampler`` defaults to TPE
    for one objective and NSGA-II for several."""
    sampler = sampler or ("tpe" if len(directions) == 1 else "nsga2")
    study = optuna.create_study(storage=open_storage(storage) if isinstance(storage, (str, type(None))) else storage,
                                study_name=study_name, directions=list(directions), load_if_exists=True,
                                sampler=make_sampler(sampler, sampler_seed), pruner=make_pruner(pruner))
    study.set_user_attr(PRUNER_ATTR, pruner or "median:2:0")
    return study


def load_study(storage, study_name: str, *, sampler: str | None = None, sampler_seed: Optional[int] = None) -> optuna.Study:
    """The study as a worker or a job sees it: same pruner (from the study's user attrs)."""
    st = open_storage(storage) if isinstance(storage, (str, type(None))) else storage
    study = optuna.load_study(study_name=study_name, storage=st)
    n_obj = len(study.directions)
    return optuna.load_study(study_name=study_name, storage=st,
                             sampler=make_sampler(sampler or ("tpe" if n_obj == 1 else "nsga2"), sampler_seed),
                             pruner=make_pruner(study.user_attrs.get(PRUNER_ATTR)))


# ---------------------------------------------------------------- in-job pruning
@dataclass
class TrialContext:
    """What a job needs to report to its trial: picklable, passed to ``launch_fn`` and into jobs."""
    storage: str
    study_name: str
    trial_number: int
    seed_index: int = 0
    step_offset: int = 0  # seed_index · (train.steps + 1)
    params: dict = field(default_factory=dict)


class TrialReporter:
    """``reporter(step, value) -> should_stop``: report an intermediate value (eval accuracy) of
    the trial's current seed and ask the study's pruner. Opens the storage itself, so it works
    in the training process wherever that runs. Multi-objective studies cannot prune (Optuna):
    it then reports nothing and returns False."""

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx
        self.pruned_at: Optional[int] = None
        self._trial: Optional[optuna.trial.Trial] = None

    def _open(self) -> Optional[optuna.trial.Trial]:
        if self._trial is None:
            study = load_study(self.ctx.storage, self.ctx.study_name)
            if len(study.directions) > 1:
                return None
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.ctx.trial_number)
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def __call__(self, step: int, value: float) -> bool:
        trial = self._open()
        if trial is None or value is None or not math.isfinite(value):
            return False
        trial.report(float(value), self.ctx.step_offset + int(step))
        if trial.should_prune():
            self.pruned_at = int(step)
            return True
        return False


# ---------------------------------------------------------------- workers
LaunchFn = Callable[[list, int, TrialContext], Any]
"""launch_fn(overrides, seed, ctx) → objective value(s) of one cell (a float or a sequence, one per
direction); raise ``optuna.TrialPruned`` when the run was pruned."""


def _as_values(result: Any, n: int) -> list[float]:
    values = [float(result)] if isinstance(result, (int, float)) else [float(v) for v in result]
    if len(values) != n:
        raise ValueError(f"launch_fn returned {len(values)} values for {n} objective(s)")
    return values


def run_trial(study: optuna.Study, trial: optuna.trial.Trial, params: list[Param], base_overrides: list[str],
              seeds: Sequence[int], launch_fn: LaunchFn, storage_text: str, steps_per_seed: int) -> None:
    """Run one asked trial over every seed and tell the study (COMPLETE, PRUNED or FAIL)."""
    values = {p.key: p.suggest(trial) for p in params}
    overrides = [*base_overrides, *to_overrides(values)]
    per_seed: dict[str, list[float]] = {}
    n = len(study.directions)
    try:
        for i, seed in enumerate(seeds):
            ctx = TrialContext(storage_text, study.study_name, trial.number, i, i * (steps_per_seed + 1), values)
            per_seed[str(seed)] = _as_values(launch_fn(list(overrides), seed, ctx), n)
            trial.set_user_attr("seed_values", per_seed)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except Exception as e:  # noqa: BLE001 - a failed cell fails its trial, not the study
        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    means = [sum(v[j] for v in per_seed.values()) / len(per_seed) for j in range(n)]
    study.tell(trial, means if n > 1 else means[0])


def worker(storage, study_name: str, base_overrides: list[str], space: dict[str, str], n_trials: int,
           seeds: Sequence[int], launch_fn: LaunchFn, *, sampler: str | None = None,
           sampler_seed: Optional[int] = None, steps_per_seed: int = 0) -> int:
    """Ask and run ``n_trials`` trials of an existing study; return how many ran. One worker per
    process or thread; under SLURM each array task runs one (``grpolab tune --worker``)."""
    if not seeds:
        raise ValueError("tune seeds=[]: need at least one seed")
    params = parse_space(space)
    study = load_study(storage, study_name, sampler=sampler, sampler_seed=sampler_seed)
    for _ in range(n_trials):
        run_trial(study, study.ask(), params, base_overrides, seeds, launch_fn, storage, steps_per_seed)
    return n_trials


def run_study(base_overrides: list[str], space: dict[str, str], *, n_trials: int, seeds: Sequence[int],
              storage: Optional[str], study_name: str, directions: Sequence[str] = ("maximize",),
              sampler: str | None = None, workers: int = 1, launch_fn: LaunchFn, pruner: str | None = None,
              processes: bool = False, steps_per_seed: int = 0, sampler_seed: Optional[int] = None,
              default_dir: str | Path = "outputs/tune") -> optuna.Study:
    """Create the study, then run ``n_trials`` over ``workers`` concurrent workers (threads, or forked
    processes with ``processes=True``); return the study. ``storage`` must be a string (workers
    reopen it); None is SQLite under ``default_dir``."""
    parse_space(space)  # a bad space fails before anything is created
    if storage is None:
        Path(default_dir).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{Path(default_dir).resolve() / 'optuna.db'}"
    create_study(storage, study_name, directions, pruner=pruner, sampler=sampler, sampler_seed=sampler_seed)
    quotas = [n_trials // workers + (i < n_trials % workers) for i in range(workers)]
    args = [(storage, study_name, list(base_overrides), dict(space), q, list(seeds), launch_fn) for q in quotas if q]
    kwargs = dict(sampler=sampler, steps_per_seed=steps_per_seed)
    if processes:
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=worker, args=a, kwargs={**kwargs, "sampler_seed": None if sampler_seed is None
                                                             else sampler_seed + i}) for i, a in enumerate(args)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"{len(bad)} tune worker process(es) exited with {bad}")
    else:
        errors: list[BaseException] = []

        def target(a, i):
            try:
                worker(*a, **kwargs, sampler_seed=None if sampler_seed is None else sampler_seed + i)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=target, args=(a, i)) for i, a in enumerate(args)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return load_study(storage, study_name)


# ---------------------------------------------------------------- the real trainer as launch_fn
@dataclass
class TuneCellJob:
    """One seed of one trial, run by the trainer (in this process or as a submitit job). Passes a
    ``TrialReporter`` to ``run_training`` when it takes one (``reporter=``), so the run stops when
    the trial is pruned."""
    overrides: list
    run_dir: str
    meta: dict
    ctx: TrialContext

    def __call__(self) -> dict:
        import inspect

        from sweeps.compose import compose
        from sweeps.job import slurm_job_id
        from trainer.identity import run_meta
        from trainer.run import run_training
        from trainer.run_record import RunStatus

        cfg = compose(self.overrides)
        reporter = TrialReporter(self.ctx)
        kwargs = {"reporter": reporter} if "reporter" in inspect.signature(run_training).parameters else {}
        meta = run_meta(cfg, self.run_dir, **self.meta)
        meta.slurm_job_id = slurm_job_id()  # None off SLURM, as for sweep cells
        summary = run_training(cfg, Path(self.run_dir), meta, **kwargs)
        return {"summary": summary, "pruned_at": reporter.pruned_at if summary.status == RunStatus.pruned else None}


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
        from trainer.run_record import read_jsonl

        run_dir = Path(self.root) / "runs" / f"t{ctx.trial_number:04d}_s{seed}"
        meta = {"sweep_id": ctx.study_name, "swept": {**ctx.params},
                "tune": {"trial": ctx.trial_number, "seed_index": ctx.seed_index}}
        job = TuneCellJob([*overrides, f"seed={seed}"], str(run_dir), meta, ctx)
        out = job() if self.executor is None else self.executor.submit(job).result()
        if out["pruned_at"] is not None:
            raise optuna.TrialPruned(f"pruned at step {out['pruned_at']}")
        summary = out["summary"].headline()
        if out["summary"].status != "completed":
            raise RuntimeError(f"run {run_dir} ended {out['summary'].status}: {out['summary'].error}")
        rows = read_jsonl(run_dir / "metrics.jsonl")
        values = []
        for name in self.objectives:
            if name in summary:
                values.append(float(summary[name]))
            else:
                seen = [r[name] for r in rows if r.get(name) is not None]
                if not seen:
                    raise KeyError(f"tune objective {name!r}: not in summary.json nor metrics.jsonl of {run_dir}")
                values.append(sum(seen) / len(seen))
        return values


# ---------------------------------------------------------------- `grpolab tune`
def tune_from_config(cfg, overrides: list[str], log: Callable = print) -> optuna.Study:
    """``grpolab tune [overrides]``: the study ``cfg.tune`` describes (space, n_trials, objectives,
    directions, sampler, pruner, storage, study_name, workers), seeds from ``cfg.sweep.seeds``, each
    cell run by ``cfg.launcher`` (local: a submitit LocalExecutor process per cell; slurm: one SLURM
    job per cell, so use a journal or RDB storage the nodes can reach). Study and run records go
    under ``<paths.output_root>/tune/<study name>/``."""
    import datetime as dt

    t = cfg.tune
    name = t.study_name or cfg.sweep.id or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(cfg.paths.output_root) / "tune" / name
    launcher = getattr(cfg.launcher.name, "value", cfg.launcher.name)
    executor = None
    if launcher == "local":
        import submitit

        executor = submitit.LocalExecutor(folder=str(root / "logs" / "%j"))
        executor.update_parameters(timeout_min=24 * 60)
    elif launcher == "slurm":  # each cell one SLURM job; the job reports to the storage itself
        from sweeps.launch_slurm import make_executor

        executor = make_executor(cfg.launcher, name, root / "logs", None)
    elif launcher != "inprocess":
        raise ValueError(f"launcher.name={launcher!r}: must be local or slurm")
    study = run_study([o for o in overrides if not o.startswith("tune.")], dict(t.space), n_trials=t.n_trials,
                      seeds=list(cfg.sweep.seeds), storage=t.storage, study_name=name,
                      directions=list(t.directions), sampler=t.sampler, workers=t.workers,
                      launch_fn=TrainerLaunch(str(root), tuple(t.objectives), executor), pruner=t.pruner,
                      steps_per_seed=cfg.train.steps, default_dir=root)
    states = [s.state.name for s in study.get_trials()]
    log(f"study {name}: {len(states)} trials ({', '.join(f'{states.count(s)} {s.lower()}' for s in sorted(set(states)))})"
        f" -> {root}")
    for best in study.best_trials:
        log(f"  best trial {best.number}: {dict(zip(t.objectives, best.values))}  {' '.join(to_overrides(best.params))}")
    return study
