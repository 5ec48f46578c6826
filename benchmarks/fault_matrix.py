"""The fault matrix of docs/run-record.md, measured: each fault done to a real run, then a re-run.

    python -m benchmarks.fault_matrix [--kills 8] [--seed 0] [--out benchmarks/results/fault_matrix.md]

Every trial is the tests' seconds-long tiny config (``benchmarks.sweep_common.fast``, with a 300-step
warm start so rewards and updates are not all zero), 24 steps, a checkpoint every 4 steps, each
process a fresh ``grpolab`` (``python -m sweeps.cli``), the local launcher for sweeps. Faults:

- SIGKILL to ``grpolab train`` at a random step (``--kills`` trials; a random 0-100 ms into it);
- INT, TERM, USR2 and HUP to ``grpolab train``, and to ``grpolab sweep`` (one cell) after step 6;
- each record file damaged in a run stopped (TERM) at step 6: ``trainer_state.pt`` and ``engine.pt``
  cut to 100 bytes, a middle line of ``metrics.jsonl`` garbled, ``summary.json`` replaced by a bare
  string, non-UTF-8 bytes, truncated JSON and an empty file, ``meta.json`` and ``sweep.json`` by
  non-UTF-8 bytes.

"Left" is what ``grpolab status`` (``sweeps.status``) says of the cell after the fault, "re-run" what
the next ``grpolab train`` / ``grpolab sweep`` of the same command did (repeated once more when the first
re-run fails). Checks per trial: ``metrics.jsonl`` steps strictly increasing and complete (0..24, less
the one garbled line), and the final summary's results and every step's metrics (``time/``, ``perf/``
left out) equal to those of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.machine import date_fact, environment
from benchmarks.report import bullets, command_line, markdown_table, write_text
from benchmarks.sweep_common import ROOT, fast
from sweeps.status import cell_state, sweep_status
from trainer.run_record import RunRecord, read_jsonl

STEPS = 24
STOP_AT = 6  # the step after which signals and the stop before a corruption are sent
CONFIG = [f"train.steps={STEPS}", "train.eval_every=4", "train.checkpoint_every=4", "sft.steps=300"]
RESULTS = ("final_eval_accuracy", "best_eval_accuracy", "final_reward", "final_response_length", "steps_completed")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fault_matrix.md"
SUMMARY_GARBAGE = {"a bare string \"completed\"": b'"completed"', "non-UTF-8 bytes": b'{"status": "\xff\xfe"}',
                   "truncated JSON": b'{"status": "runn', "an empty file": b""}


@dataclass
class Trial:
    left: str  # the cell's state after the fault, as status says it
    rerun: str  # what the re-run did
    checks: dict[str, bool] = field(default_factory=dict)


def _config(tmp: Path) -> list[str]:
    """The fast config with this matrix's steps, eval and checkpoint cadence and warm start."""
    mine = {o.split("=", 1)[0] for o in CONFIG}
    return [o for o in fast(tmp) if o.split("=", 1)[0] not in mine] + CONFIG


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _run(*args: str) -> tuple[int, str]:
    proc = _start(*args)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] if (run_dir / "metrics.jsonl").exists() else []


def _signal_at(proc: subprocess.Popen, run_glob: Path, step: int, sig: int, jitter_s: float = 0.0) -> None:
    """Send ``sig`` to ``proc`` once the run dir matching ``run_glob`` holds ``step``; wait for it to end."""
    deadline = time.time() + 600
    while True:
        runs = list(run_glob.parent.glob(run_glob.name))
        if runs and max(_steps(runs[0]), default=-1) >= step:
            break
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the run ended before step {step}: {proc.communicate()[0][-2000:]}")
        time.sleep(0.02)
    time.sleep(jitter_s)
    proc.send_signal(sig)
    proc.communicate(timeout=600)


def _left(run_dir: Path) -> str:
    state, _ = cell_state(RunRecord.peek_summary(run_dir), None, run_dir)
    return state.value


def _deterministic(rows: list[dict]) -> dict[int, dict]:
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows}


def _checks(run_dir: Path, whole: Path, lost: int = 0) -> dict[str, bool]:
    steps = _steps(run_dir)
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (run_dir, whole))
    mine, theirs = (_deterministic(read_jsonl(d / "metrics.jsonl")) for d in (run_dir, whole))
    return {
        "completed": summary.get("status") == "completed",
        "steps strictly increasing": all(a < b for a, b in zip(steps, steps[1:])) and len(steps) == STEPS + 1 - lost,
        "final metrics equal": {k: summary.get(k) for k in RESULTS} == {k: reference.get(k) for k in RESULTS}
        and all(theirs[s] == row for s, row in mine.items()),
    }


def _rerun(args: list[str], run_dir: Path) -> str:
    """Re-run; once more if that failed. What it did, in a few words, read from the run record (a
    sweep's own output does not hold its cells' logs)."""
    said = []
    for _ in range(2):
        aside_before = set(run_dir.glob("checkpoint.corrupt-*"))
        _run(*args)
        summary = RunRecord.peek_summary(run_dir)
        error = (summary.error or {}) if summary is not None else {}
        if summary is not None and summary.status == "failed" and error.get("checkpoint"):
            said.append(f"failed naming {error['checkpoint']}")
        elif set(run_dir.glob("checkpoint.corrupt-*")) - aside_before:
            said.append("moved the checkpoint aside, started afresh")
        elif summary is not None and summary.resumed_from_step is not None:
            said.append(f"resumed from its checkpoint (step {summary.resumed_from_step})")
        else:
            said.append("started afresh")
        if (run_dir / "metrics.corrupt.jsonl").exists():
            said[-1] += ", kept the bad line aside"
        if summary is not None and summary.status == "completed":
            break
    return "; then ".join(said)


# ---------------------------------------------------------------- the trials
def kill_train(tmp: Path, whole: Path, rng: random.Random, sig: int = signal.SIGKILL, at: int | None = None) -> Trial:
    run = tmp / f"train-{rng.randrange(10**9)}"
    args = ["train", "--run-dir", str(run), *_config(tmp)]
    step = at if at is not None else rng.randrange(1, STEPS - 1)
    _signal_at(_start(*args), run, step, sig, jitter_s=rng.uniform(0, 0.1) if at is None else 0)
    left = _left(run)
    return Trial(left, _rerun(args, run), _checks(run, whole))


def _sweep_args(tmp: Path, sweep_id: str) -> list[str]:
    return ["sweep", f"sweep.id={sweep_id}", *_config(tmp)]


def _stopped_sweep(tmp: Path, sweep_id: str, sig: int = signal.SIGTERM) -> tuple[list[str], Path]:
    args = _sweep_args(tmp, sweep_id)
    runs = tmp / "out" / "sweeps" / sweep_id / "runs"
    _signal_at(_start(*args), runs / "*", STOP_AT, sig)
    (run,) = runs.iterdir()
    return args, run


def signal_sweep(tmp: Path, whole: Path, sig: int) -> Trial:
    args, run = _stopped_sweep(tmp, f"sig{sig}", sig)
    pid = RunRecord.peek_summary(run).pid
    (cell,) = sweep_status(run.parent.parent)
    trial = Trial(cell.state.value, _rerun(args, run), _checks(run, whole))
    trial.checks["no orphaned cell"] = not Path(f"/proc/{pid}").exists()
    return trial


def corrupt(tmp: Path, whole: Path, name: str, damage) -> Trial:
    args, run = _stopped_sweep(tmp, f"c{abs(hash(name)) % 10**6}")
    lost = damage(run)
    rc, out = _run("status", str(run.parent.parent))
    (cell,) = sweep_status(run.parent.parent)
    dry_rc, dry = _run(*args, "--dry-run")
    trial = Trial(cell.state.value, _rerun(args, run), _checks(run, whole, lost))
    trial.checks["status and --dry-run work"] = rc == 0 and dry_rc == 0 and "Traceback" not in out + dry
    return trial


def _cut(file: str):
    def damage(run: Path) -> int:
        path = next(run.glob(f"checkpoint/step_*/{file}"))
        path.write_bytes(path.read_bytes()[:100])
        return 0
    return damage


def _garble_metrics(run: Path) -> int:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[3] = lines[3][:12] + "#garbled#"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return 1


def _write(rel: str, data: bytes):
    def damage(run: Path) -> int:
        (run.parent.parent / rel if rel == "sweep.json" else run / rel).write_bytes(data)
        return 0
    return damage


def trials(tmp: Path, whole: Path, kills: int, rng: random.Random):
    """(fault, [Trial, ...]) rows, in the doc's order."""
    yield f"SIGKILL to `grpolab train` at a random step (1..{STEPS - 2})", [kill_train(tmp, whole, rng)
                                                                          for _ in range(kills)]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
        yield f"{sig.name} to `grpolab train` after step {STOP_AT}", [kill_train(tmp, whole, rng, sig, STOP_AT)]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
        yield f"{sig.name} to `grpolab sweep` after step {STOP_AT}", [signal_sweep(tmp, whole, sig)]
    damages = {"`trainer_state.pt` cut to 100 bytes": _cut("trainer_state.pt"),
               "`engine.pt` cut to 100 bytes": _cut("engine.pt"),
               "`metrics.jsonl`: a middle line garbled": _garble_metrics,
               **{f"`summary.json`: {k}": _write("summary.json", v) for k, v in SUMMARY_GARBAGE.items()},
               "`meta.json`: non-UTF-8 bytes": _write("meta.json", b"\xff\xfe\x00"),
               "`sweep.json`: non-UTF-8 bytes": _write("sweep.json", b"\xff\xfe\x00")}
    for name, damage in damages.items():
        yield name, [corrupt(tmp, whole, name, damage)]


def _count(values: list[str]) -> str:
    return ", ".join(f"{v} {values.count(v)}/{len(values)}" for v in dict.fromkeys(values))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=8, help="SIGKILL trials at random steps (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="fault_matrix-"))
    try:
        whole = tmp / "whole"
        rc, out = _run("train", "--run-dir", str(whole), *_config(tmp))
        if rc != 0:
            raise RuntimeError(f"the uninterrupted run failed:\n{out[-2000:]}")
        rows, failed = [], False
        for fault, done in trials(tmp, whole, args.kills, random.Random(args.seed)):
            checks = {k: sum(t.checks[k] for t in done) for k in done[0].checks}
            failed |= any(n < len(done) for n in checks.values())
            rows.append([fault, str(len(done)), _count([t.left for t in done]), _count([t.rerun for t in done]),
                         "; ".join(f"{k} {n}/{len(done)}" for k, n in checks.items())])
            print(f"[fault_matrix] {fault}: {rows[-1][2]} | {rows[-1][3]} | {rows[-1][4]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = markdown_table(["fault", "trials", "left in (grpolab status)", "re-run does", "checks"], "lrlll", rows)
    text = "\n".join(["# Fault matrix", "", f"`{command_line('python -m benchmarks.fault_matrix', argv)}`", "",
                      *bullets([*environment(), date_fact(), ("wall time", f"{time.time() - t0:.0f} s")]), "",
                      table, ""])
    print(table)
    write_text(args.out, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
