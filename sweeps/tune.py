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
  in another process or on another node (hydra-optuna-sweeper cannot: facebookresearch/hydra#1954). Seeds run
  one after another and seed i reports at ``i·(steps+1) + step``: every trial has the same schedule,
  so the pruner compares like with like.
- Storage: ``sqlite:///path.db`` (default), a JournalStorage file (``journal:PATH`` or a path ending
  in ``.journal``/``.log``; use it on a shared filesystem under SLURM), or any SQLAlchemy URL.
  Create the study before starting concurrent workers (two processes creating one SQLite file race).

Space grammar (docs/tracking.md): ``float:LOW:HIGH[:log]``, ``int:LOW:HIGH[:log]``, ``cat:A,B,C``.
Nothing here knows the trainer: ``sweeps.tune_launch`` runs it as a ``launch_fn`` (``grpolab tune``).
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
DEFAULT_DB = "optuna.db"  # the SQLite file of a study given no storage, in its root


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
def default_storage(default_dir: str | Path) -> str:
    """The storage of a study given none: ``sqlite:///<default_dir>/optuna.db`` (the dir created)."""
    Path(default_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(default_dir).resolve() / DEFAULT_DB}"


def open_storage(storage, default_dir: str | Path = "outputs/tune") -> optuna.storages.BaseStorage:
    """An Optuna storage from a string: None → ``default_storage(default_dir)``; ``journal:PATH`` or
    a path ending in .journal/.log → JournalStorage file; anything else is an RDB URL. A storage
    object is returned as is."""
    if storage is None:
        storage = default_storage(default_dir)
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
    raise ValueError(f"tune pruner={spec!r}: must be median[:STARTUP[:WARMUP]], percentile:P[:STARTUP[:WARMUP]] "
                     "or none")


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
    study = optuna.create_study(storage=open_storage(storage), study_name=study_name, directions=list(directions),
                                load_if_exists=True, sampler=make_sampler(sampler, sampler_seed),
                                pruner=make_pruner(pruner))
    study.set_user_attr(PRUNER_ATTR, pruner or "median:2:0")
    return study


def load_study(storage, study_name: str, *, sampler: str | None = None,
               sampler_seed: Optional[int] = None) -> optuna.Study:
    """The study as a worker or a job sees it: same pruner (from the study's user attrs)."""
    st = open_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=st)
    n_obj = len(study.directions)
    return optuna.load_study(study_name=study_name, storage=st,
                             sampler=make_sampler(sampler or ("tpe" if n_obj == 1 else "nsga2"), sampler_seed),
                             pruner=make_pruner(study.user_attrs.get(PRUNER_ATTR)))


# ---------------------------------------------------------------- in-job pruning
def trial_handle(study: optuna.Study, storage: optuna.storages.BaseStorage, trial_number: int) -> optuna.trial.Trial:
    """The ``Trial`` of running trial ``trial_number`` of ``study`` (asked by another process), to
    report to and ask the pruner. Optuna has no public way to get one (``study.ask()`` only makes
    new trials): ``optuna.trial.Trial(study, trial_id)`` is the constructor ``Study.ask`` uses, the
    one semi-private call left, kept here; ``tests/test_tune.py`` checks it against the installed
    Optuna. RuntimeError, naming this function, when Optuna no longer builds it that way."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
    try:
        trial = optuna.trial.Trial(study, trial_id)
        number = trial.number
    except (TypeError, AttributeError) as e:
        raise RuntimeError(f"optuna {optuna.__version__} no longer builds a Trial as optuna.trial.Trial(study, "
                           f"trial_id) ({type(e).__name__}: {e}); update sweeps.tune.trial_handle") from e
    if number != trial_number:
        raise RuntimeError(f"optuna {optuna.__version__}: optuna.trial.Trial(study, trial_id) gave trial {number}, "
                           f"not {trial_number}; update sweeps.tune.trial_handle")
    return trial


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
            storage = open_storage(self.ctx.storage)
            study = load_study(storage, self.ctx.study_name)
            if len(study.directions) > 1:
                return None
            self._trial = trial_handle(study, storage, self.ctx.trial_number)
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


def shown(value: Any, digits: int = 4) -> str:
    """A param or objective value as a line shows it: floats to ``digits`` significant digits."""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def trial_line(number: int, state: str, params: dict, values=None, objectives: Sequence[str] = (),
               why: str = "") -> str:
    """``trial 3 complete: final_eval_accuracy=0.625  algorithm.kl.coef=0.000347`` (pruned, failed: why)."""
    names = list(objectives) or [f"value{i}" if len(values or ()) > 1 else "value" for i in range(len(values or ()))]
    what = ", ".join(f"{n}={shown(v)}" for n, v in zip(names, values or ())) or why
    return f"trial {number} {state}: {what}  " + " ".join(f"{k}={shown(v)}" for k, v in params.items())


def run_trial(study: optuna.Study, trial: optuna.trial.Trial, params: list[Param], base_overrides: list[str],
              seeds: Sequence[int], launch_fn: LaunchFn, storage_text: str, steps_per_seed: int,
              log: Optional[Callable[[str], Any]] = None, objectives: Sequence[str] = ()) -> None:
    """Run one asked trial over every seed and tell the study (COMPLETE, PRUNED or FAIL); ``log``
    gets one line (``trial_line``, values named by ``objectives``) when it has ended."""
    log = log or (lambda _line: None)
    values = {p.key: p.suggest(trial) for p in params}
    overrides = [*base_overrides, *to_overrides(values)]
    per_seed: dict[str, list[float]] = {}
    n = len(study.directions)
    try:
        for i, seed in enumerate(seeds):
            ctx = TrialContext(storage_text, study.study_name, trial.number, i, i * (steps_per_seed + 1), values)
            per_seed[str(seed)] = _as_values(launch_fn(list(overrides), seed, ctx), n)
            trial.set_user_attr("seed_values", per_seed)
    except optuna.TrialPruned as e:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log(trial_line(trial.number, "pruned", values, why=str(e) or "pruned"))
        return
    except Exception as e:  # a failed cell fails its trial, not the study
        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log(trial_line(trial.number, "failed", values, why=f"{type(e).__name__}: {e}".splitlines()[0][:200]))
        return
    means = [sum(v[j] for v in per_seed.values()) / len(per_seed) for j in range(n)]
    study.tell(trial, means if n > 1 else means[0])
    log(trial_line(trial.number, "complete", values, means, objectives))


def worker(storage, study_name: str, base_overrides: list[str], space: dict[str, str], n_trials: int,
           seeds: Sequence[int], launch_fn: LaunchFn, *, sampler: str | None = None,
           sampler_seed: Optional[int] = None, steps_per_seed: int = 0, log: Optional[Callable] = None,
           objectives: Sequence[str] = ()) -> int:
    """Ask and run ``n_trials`` trials of an existing study; return how many ran. One worker per
    process or thread; under SLURM each array task runs one (``grpolab tune --worker``)."""
    if not seeds:
        raise ValueError("tune seeds=[]: need at least one seed")
    params = parse_space(space)
    study = load_study(storage, study_name, sampler=sampler, sampler_seed=sampler_seed)
    for _ in range(n_trials):
        run_trial(study, study.ask(), params, base_overrides, seeds, launch_fn, storage, steps_per_seed, log,
                  objectives)
    return n_trials


def run_study(base_overrides: list[str], space: dict[str, str], *, n_trials: int, seeds: Sequence[int],
              storage: Optional[str], study_name: str, directions: Sequence[str] = ("maximize",),
              sampler: str | None = None, workers: int = 1, launch_fn: LaunchFn, pruner: str | None = None,
              processes: bool = False, steps_per_seed: int = 0, sampler_seed: Optional[int] = None,
              default_dir: str | Path = "outputs/tune", log: Optional[Callable] = None,
              objectives: Sequence[str] = ()) -> optuna.Study:
    """Create the study, then run ``n_trials`` over ``workers`` concurrent workers (threads, or forked
    processes with ``processes=True``); return the study. ``storage`` must be a string (workers
    reopen it); None is SQLite under ``default_dir``. ``log`` gets a line as each trial ends,
    naming its values by ``objectives``."""
    parse_space(space)  # a bad space fails before anything is created
    storage = default_storage(default_dir) if storage is None else storage
    create_study(storage, study_name, directions, pruner=pruner, sampler=sampler, sampler_seed=sampler_seed)
    quotas = [n_trials // workers + (i < n_trials % workers) for i in range(workers)]
    args = [(storage, study_name, list(base_overrides), dict(space), q, list(seeds), launch_fn) for q in quotas if q]
    kwargs = dict(sampler=sampler, steps_per_seed=steps_per_seed, log=log, objectives=tuple(objectives))
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
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=target, args=(a, i)) for i, a in enumerate(args)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return load_study(storage, study_name)
