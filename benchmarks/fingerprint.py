"""Behaviour fingerprint: every paper preset and the demo, run short, their metrics compared.

A refactor that claims "behaviour unchanged" proves it here: run the same sweeps on two code
trees (a commit before the change, the working tree after) and compare each run's
``metrics.jsonl`` row by row, with the wall-clock keys (``time/*``, ``perf/*``) left out.

    python -m benchmarks.fingerprint run --out /tmp/fp_after                 # this tree
    python -m benchmarks.fingerprint run --out /tmp/fp_before --rev 7f6f021  # a commit (git worktree)
    python -m benchmarks.fingerprint compare /tmp/fp_before /tmp/fp_after

``run`` sweeps ``experiment=demo`` and every ``experiment=*_paper`` of the tree (seeds 0 and 1,
``--steps`` steps each, eval and diagnostics inside that span so every code path logs) through the
tree's own ``grpolab sweep`` in a subprocess, then writes ``fingerprint.json``: one entry per run,
keyed by experiment, swept values and seed (not by run name: a run's name holds its config hash,
which a schema change may change without changing what the run does). ``compare`` prints, for each
run, identical or the first differing step and key with the largest difference, and exits 1 unless
every run present in both is identical (``--allow`` names experiments whose runs may differ, for a
change that is meant to alter them; their differences are still printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.run_record import META_FILE, RunRecord, SweepPaths, sweep_root

ROOT = Path(__file__).resolve().parents[1]
WALL_CLOCK = ("time/", "perf/")


def presets(tree: Path) -> list[str]:
    names = sorted(p.stem for p in (tree / "conf" / "experiment").glob("*_paper.yaml"))
    return ["demo", *names]


def _checkout(rev: str, dest: Path) -> Path:
    """A detached git worktree of ``rev`` (reused when it is already there at that commit)."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    if (dest / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True).stdout.strip()
        if head == sha:
            return dest
        subprocess.run(["git", "worktree", "remove", "--force", str(dest)], cwd=ROOT, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(dest), sha], cwd=ROOT, check=True,
                   capture_output=True)
    return dest


def run(tree: Path, out: Path, steps: int, only: list[str] | None) -> Path:
    """Sweep each preset on ``tree``'s code; return the fingerprint file."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "GRPOLAB_CONF_DIR": str(tree / "conf")}
    common = [f"train.steps={steps}", f"train.eval_every={max(1, steps // 2)}",
              f"diagnostics.every={max(1, steps // 3)}", "train.eval_prompts=64", "sweep.seeds=[0,1]",
              f"paths.output_root={out}", f"paths.cache_dir={out / 'cache'}", "launcher.max_parallel=2"]
    entries: dict[str, list[dict]] = {}
    for name in only or presets(tree):
        cmd = [sys.executable, "-P", "-m", "sweeps.cli", "sweep", f"experiment={name}", f"sweep.id=fp_{name}", *common]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        print(f"[fingerprint] {name}: exit {proc.returncode} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        entries.update(collect(sweep_root(out, f"fp_{name}"), name))
    path = out / "fingerprint.json"
    path.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    print(f"[fingerprint] {len(entries)} runs -> {path}", file=sys.stderr)
    return path


def run_key(experiment: str, meta: dict) -> str:
    swept = {k: v for k, v in (meta.get("swept") or {}).items() if k != "seed"}
    cell = ",".join(f"{k}={swept[k]}" for k in sorted(swept))
    return f"{experiment}|{cell}|seed={meta.get('seed')}"


def collect(sweep_dir: Path, experiment: str) -> dict[str, list[dict]]:
    out = {}
    for meta_path in sorted(SweepPaths(sweep_dir).runs.glob(f"*/{META_FILE}")):
        record = RunRecord(meta_path.parent, writable=False)
        rows = [{k: v for k, v in row.items() if not k.startswith(WALL_CLOCK)} for row in record.metrics()]
        summary = record.read_summary()
        out[run_key(experiment, json.loads(meta_path.read_text()))] = {
            "status": summary.status.value if summary else None, "rows": rows}
    return out


def _diff(a: object, b: object) -> float:
    """0 when equal (NaN/null equal to themselves), inf for a type or presence change."""
    if a == b:
        return 0.0
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(a - b)
    return math.inf


def compare_runs(a: dict, b: dict) -> tuple[float, str]:
    """(largest difference, where) between two runs' rows; (0, '') when identical."""
    if a["status"] != b["status"]:
        return math.inf, f"status {a['status']} vs {b['status']}"
    if len(a["rows"]) != len(b["rows"]):
        return math.inf, f"{len(a['rows'])} vs {len(b['rows'])} rows"
    worst, where, first = 0.0, "", ""
    for ra, rb in zip(a["rows"], b["rows"]):
        for key in sorted(set(ra) | set(rb)):
            d = _diff(ra.get(key, "<absent>"), rb.get(key, "<absent>"))
            if d > 0 and not first:
                first = f"first at step {ra.get('step')} {key}"
            if d > worst:
                worst, where = d, f"step {ra.get('step')} {key}: {ra.get(key, '<absent>')} vs {rb.get(key, '<absent>')}"
    return worst, f"{first}; largest {where}" if worst else ""


def compare(a_dir: Path, b_dir: Path, allow: list[str]) -> int:
    a = json.loads((a_dir / "fingerprint.json").read_text())
    b = json.loads((b_dir / "fingerprint.json").read_text())
    bad = 0
    for key in sorted(set(a) | set(b)):
        experiment = key.split("|", 1)[0]
        if key not in a or key not in b:
            print(f"ONLY IN {'B' if key not in a else 'A'}  {key}")
            bad += experiment not in allow
            continue
        worst, where = compare_runs(a[key], b[key])
        if worst == 0:
            print(f"identical  {key}  ({len(a[key]['rows'])} rows)")
        else:
            print(f"DIFFERENT  {key}  {where}")
            bad += experiment not in allow
    same = sum(1 for k in set(a) & set(b) if compare_runs(a[k], b[k])[0] == 0)
    print(f"\n{same} of {len(set(a) | set(b))} runs identical; {bad} unexpected differences")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fingerprint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="sweep every preset short and write <out>/fingerprint.json")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--rev", help="a git revision to run instead of this tree (checked out as a worktree)")
    r.add_argument("--steps", type=int, default=6, help="steps per run (default 6)")
    r.add_argument("--only", nargs="*", help="presets to run (default demo and every *_paper)")
    c = sub.add_parser("compare", help="compare two fingerprints; exit 1 on an unexpected difference")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--allow", nargs="*", default=[], help="experiments whose runs are expected to differ")
    args = p.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.a, args.b, args.allow)
    tree = ROOT
    if args.rev:
        tree = _checkout(args.rev, Path(tempfile.gettempdir()) / f"grpolab-fingerprint-{args.rev}")
    run(tree, args.out.resolve(), args.steps, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
