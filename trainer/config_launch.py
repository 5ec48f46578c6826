"""The config sections that never change a run's result: where it runs, how it is tracked, what
sweep or search it belongs to, where its files go. They are left out of the config hash
(``trainer.identity.NON_RESULT_KEYS``); ``trainer.config`` puts them in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Dict, List, Optional

from trainer.knobs import knob
from trainer.safe_text import safe_name


class LauncherName(str, Enum):
    local = "local"  # processes on this machine (submitit LocalExecutor)
    slurm = "slurm"  # one SLURM job array per sweep (submitit SlurmExecutor)


class TrackerMode(str, Enum):
    auto = "auto"
    offline = "offline"
    online = "online"
    disabled = "disabled"


class TrackerName(str, Enum):
    none = "none"
    wandb = "wandb"


@dataclass
class LauncherConfig:
    name: LauncherName = knob(
        LauncherName.local, "Where cells run: local processes, or a SLURM job array (docs/slurm.md)."
    )
    max_parallel: int = knob(2, "Cells running at once (local processes; SLURM: the job array's %N throttle).", ge=1)
    threads_per_job: int = knob(
        1, "torch threads per cell (cores / max_parallel on a laptop; cpus_per_task on SLURM).", ge=1
    )
    # ---- SLURM (launcher=slurm); null leaves the option to the cluster's defaults
    partition: Optional[str] = knob(None, "SLURM partition (sbatch --partition).")
    account: Optional[str] = knob(None, "SLURM account to charge (sbatch --account).")
    qos: Optional[str] = knob(None, "SLURM quality of service (sbatch --qos).")
    time_min: int = knob(60, "Time limit of each job attempt in minutes; a job near it checkpoints and requeues.", ge=1)
    nodes: int = knob(1, "Nodes per job (sbatch --nodes).", ge=1)
    tasks_per_node: int = knob(1, "Tasks (ranks) per node (sbatch --ntasks-per-node).", ge=1)
    cpus_per_task: int = knob(1, "CPUs per task (sbatch --cpus-per-task).", ge=1)
    gpus_per_task: int = knob(0, "GPUs per task (sbatch --gpus-per-task); 0 requests none.", ge=0)
    mem_gb: Optional[float] = knob(None, "Memory per node in GB (sbatch --mem); null = the partition's default.", gt=0)
    constraint: Optional[str] = knob(None, "Node features required (sbatch --constraint), e.g. 'a100&ib'.")
    sbatch_extra: Dict[str, str] = knob(
        {}, "More sbatch options as {option: value} (e.g. {reservation: myres, mail-type: END}); names are checked, "
        "values are shell-quoted, control characters are refused.")
    env: Dict[str, str] = knob(
        {}, "Environment of each job (exported, quoted, in the sbatch script; set for a local job's process), e.g. "
        "{HF_HOME: /scratch/hf, HF_TOKEN: ...}; its values are never recorded (<redacted> in records and W&B).")
    signal_delay_s: int = knob(
        120, "SLURM sends USR2 this many seconds before the time limit: the job checkpoints at the next step "
        "boundary and requeues itself (so a step must fit in it).", ge=10)
    max_requeues: int = knob(3, "Requeues per job after preemption or time limit; beyond it the cell is failed.", ge=0)
    refuse_dirty: bool = knob(
        False, "Refuse to submit from a git tree with uncommitted changes (default: warn and record it in meta.json).")
    snapshot_code: bool = knob(
        True, "Jobs import a copy of trainer/, sweeps/, analysis/ taken at submit time (sweep_dir/code/<stamp>), "
        "so editing the tree never changes queued jobs.")


@dataclass
class TrackerConfig:
    name: TrackerName = knob(TrackerName.none, "Experiment tracker fed from the run record (none = record only).")
    project: Optional[str] = knob(None, "W&B project (online needs it and an API key from the env or ~/.netrc).")
    entity: Optional[str] = knob(None, "W&B entity (team or user).")
    mode: TrackerMode = knob(
        TrackerMode.auto, "W&B mode: auto (online with project + key, else offline), offline, online, disabled.")
    tags: List[str] = knob([], "Extra W&B tags (each swept key=value is tagged already).")


@dataclass
class TuneConfig:
    space: Dict[str, str] = knob(
        {}, "Searched keys → float:LO:HI[:log] | int:LO:HI[:log] | cat:A,B (docs/tracking.md); never seed."
    )
    n_trials: int = knob(
        20, "Optuna trials (each runs every seed of sweep.seeds; the objective is the seed mean).", ge=1
    )
    objectives: List[str] = knob(
        ["final_eval_accuracy"], "Summary keys to optimize (two or more: multi-objective, NSGA-II)."
    )
    directions: List[str] = knob(["maximize"], "maximize/minimize per objective.")
    sampler: Optional[str] = knob(None, "tpe, nsga2, random; null = TPE (one objective) or NSGA-II (several).")
    pruner: str = knob("median:2:0", "median[:startup[:warmup]], percentile:..., none: stops trials at eval steps.")
    storage: Optional[str] = knob(
        None, "null = SQLite under the sweep dir; journal:PATH (SLURM, shared FS); any RDB URL."
    )
    study_name: Optional[str] = knob(
        None, "Study name, the directory <output_root>/tune/<name>: letters, digits, ._- (null = the sweep id).",
        valid=safe_name)
    workers: int = knob(1, "Concurrent trial workers.", ge=1)


@dataclass
class SweepConfig:
    params: Dict[str, str] = knob({}, "Swept keys → Hydra sweep values, e.g. {algorithm.kl.coef: '0,0.05'}.")
    seeds: List[int] = knob([0], "Replication axis: every cell runs once per seed.")
    id: Optional[str] = knob(
        None, "Sweep id, the directory <output_root>/sweeps/<id>: 1-100 of letters, digits, ._-, not starting with "
        ". or - (null = a timestamp).", valid=safe_name)


@dataclass
class PathsConfig:
    output_root: str = knob("outputs", "Sweeps and runs are written under here.")
    cache_dir: str = knob(".cache/grpolab", "Tiny model, SFT warm starts (keyed by config hash).")
