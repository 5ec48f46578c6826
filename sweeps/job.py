"""The unit a launcher runs: one (config, seed) cell writing one run record. Picklable for submitit.

Stopping and requeueing (SLURM): submitit's own handler would checkpoint from inside the signal
handler, i.e. in the middle of a training step. Instead the job turns the signals into a flag that
``run_training`` polls after every step, so a checkpoint is always taken at a step boundary:

- ``USR2`` (sent ``launcher.signal_delay_s`` before the time limit, and on preemption where the
  cluster sets ``PreemptParameters=send_user_signal``): checkpoint, then ``scontrol requeue`` this job.
- ``TERM`` (SLURM is ending the job: ``scontrol requeue``, preemption, ``scancel``): checkpoint and
  exit; SLURM requeues it if that is what it is doing. A step that outlasts ``KillWait`` loses the
  work since the last periodic checkpoint (``train.checkpoint_every``).
- ``INT`` and ``HUP`` (a local sweep stopped, a terminal closed; ``scancel --signal``): as ``TERM``.

``grpolab train`` and ``grpolab sweep`` use the same ``StopFlag``. A cell that fails exits 1 after
saying why on stderr, so neither submitit ("Job completed successfully") nor SLURM (``COMPLETED``)
reports a failed run as a success.

A requeued job runs this same callable again and ``run_training`` resumes from the checkpoint.
Requeues are bounded by ``launcher.max_requeues`` (SLURM counts restarts in ``SLURM_RESTART_COUNT``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from trainer.config import Config
from trainer.identity import run_meta, to_dict
from trainer.locks import RunBusy
from trainer.run_record import Meta, RunRecord, RunStatus, Summary
from trainer.secrets import REDACTED, redact_config

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP)


class StopFlag:
    """Set by INT/TERM/USR2/HUP; polled by the training loop between steps (nothing else happens in
    the handler: a flag, a count, and one line written straight to stderr's file descriptor)."""

    def __init__(self, what: str = "checkpointing at the next step boundary", second_int_interrupts: bool = False):
        self.signum: int | None = None
        self.count = 0  # signals received
        self.what = what
        # an interactive command: a second Ctrl-C means "now" (KeyboardInterrupt; the run records
        # preempted if an earlier checkpoint is there, else failed)
        self.second_int_interrupts = second_int_interrupts

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> dict:
        """Replace the handlers (submitit's, Python's KeyboardInterrupt); return the ones replaced.
        Only possible in the main thread; elsewhere a no-op. Signals ``sweeps.job_boot`` held while
        the job started are handled now, in the order they came."""
        from sweeps import job_boot

        old = {}
        try:
            for sig in STOP_SIGNALS:
                old[sig] = signal.signal(sig, self._handle)
        except ValueError:
            return old
        for signum in job_boot.take():
            self._handle(signum, None, held=True)
        return old

    def _handle(self, signum, frame, held: bool = False) -> None:
        self.count += 1
        if self.second_int_interrupts and signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        if self.signum is None or signum == signal.SIGTERM:  # TERM wins: SLURM is already ending the job
            self.signum = signum
        # os.write, not print: a handler that prints while the main thread prints raises "reentrant call"
        then = " (Ctrl-C again: stop now)" if self.second_int_interrupts and signum == signal.SIGINT else ""
        when = " while the job started" if held else ""
        os.write(2, f"[grpolab] caught {signal.Signals(signum).name}{when}: {self.what}{then}\n".encode())


def slurm_job_id() -> str | None:
    """This job's id as scontrol knows it (``<array>_<task>`` inside an array), or None off SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def export_rank_env() -> int:
    """Inside a SLURM job of several tasks (``launcher.tasks_per_node`` × ``nodes`` > 1), export
    RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT from SLURM's task layout (submitit's
    helper), so each task is one rank of the cell's data-parallel run; returns this task's rank."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
        return 0
    import submitit

    # CUDA_VISIBLE_DEVICES is left as SLURM bound it; the rank picks its GPU (trainer.distributed).
    # overwrite: SLURM's layout is this job's. Rank variables inherited from the submitting shell (a
    # torchrun shell, or a library that set LOCAL_WORLD_SIZE, as vLLM does) would otherwise fail the job.
    env = submitit.helpers.TorchDistributedEnvironment()
    return env.export(set_cuda_visible_devices=False, overwrite=True).rank


@dataclass
class Busy:
    """A cell's result when another process held its run dir: it ran nothing and wrote nothing."""

    run_dir: str


@dataclass
class CellJob:
    cfg: Config
    run_dir: str
    meta: Optional[Meta] = None  # the labels of a sweep cell; None: labelled by the run dir's name

    # Pickled as a plain dict and rebuilt against the schema when the job starts, so a queued job
    # survives code changes that add config fields (they take their defaults). The dict is what
    # config.yaml records, secrets redacted (trainer.secrets): only the sections that never change a
    # result (launcher, tracker, sweep, tune) can differ from the run's config, and W&B logs the same
    # redaction. launcher.env's values come back from the job's environment, where the launcher put them.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "cfg": redact_config(to_dict(self.cfg))}

    def __setstate__(self, state: dict) -> None:
        from sweeps.compose import config_from_dict

        cfg = state["cfg"]
        launcher = cfg.get("launcher") or {}
        launcher["env"] = {k: os.environ.get(k, REDACTED) for k in launcher.get("env") or {}}
        self.__dict__.update({**state, "cfg": config_from_dict(cfg)})

    def __call__(self) -> Summary | Busy:
        t_call = time.time()
        stop = StopFlag()
        stop.install()  # first: a signal during the imports below must not be lost
        from trainer.run import run_training  # heavy imports happen in the job process

        t_imported = time.time()

        log = functools.partial(print, flush=True)
        rank = export_rank_env()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        limit = self.cfg.launcher.max_requeues
        if restarts > limit:
            if rank != 0:
                return Summary(status=RunStatus.failed)
            record = RunRecord(self.run_dir)
            summary = record.read_summary() or Summary()
            summary.status = RunStatus.failed
            summary.error = {"cause": f"requeued {restarts} times, more than launcher.max_requeues={limit}"}
            record.write_summary(summary)
            log(f"[grpolab] not resuming: {summary.error['cause']}")
            return summary
        job_t0 = os.environ.get("GRPOLAB_JOB_T0")  # set by the sbatch script's first line
        meta = dataclasses.replace(self.meta or run_meta(self.cfg, self.run_dir), slurm_job_id=slurm_job_id())
        try:
            summary = run_training(self.cfg, Path(self.run_dir), meta, log=log, should_stop=stop)
        except RunBusy as e:  # another invocation is running this cell: leave it to that one
            log(f"[grpolab] {e}")
            return Busy(self.run_dir)
        if summary.timing is not None and rank == 0:
            summary.timing["job_imports_s"] = t_imported - t_call
            if job_t0:
                summary.timing["job_start_to_call_s"] = t_call - float(job_t0)
            RunRecord(self.run_dir).write_summary(summary)
        if summary.status == RunStatus.failed:
            cause = (summary.error or {}).get("cause", "see the log")
            print(f"[grpolab] run failed at step {summary.steps_completed}: {cause} (record: {self.run_dir})",
                  file=sys.stderr, flush=True)
            sys.exit(1)  # no result pickle: the job failed, and its exit code says so
        if summary.status != RunStatus.preempted or stop.signum is None:
            return summary
        job_id = slurm_job_id()
        if stop.signum == signal.SIGUSR2 and job_id and rank == 0:  # one requeue per job, from rank 0
            if restarts >= limit:
                summary.status = RunStatus.failed
                summary.error = {
                    "step": summary.steps_completed,
                    "cause": f"time limit or preemption after {restarts} requeues (launcher.max_requeues={limit}); "
                             "checkpoint kept: re-run the sweep command to continue"}
                RunRecord(self.run_dir).write_summary(summary)
                return summary
            subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)
            log(f"[grpolab] requeued {job_id} ({restarts + 1}/{limit}); it resumes from the checkpoint")
        # No result pickle for an unfinished run: SystemExit passes through submitit's job wrapper.
        sys.exit(-1)

    def checkpoint(self):
        """submitit's protocol, used only if USR2 arrives before ``__call__`` replaced submitit's
        handler (while the job unpickles): requeue the same job; the run resumes from disk."""
        import submitit

        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) >= self.cfg.launcher.max_requeues:
            return None
        return submitit.helpers.DelayedSubmission(self)
