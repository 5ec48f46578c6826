"""Replay a new user's session on a clean clone and write it down as docs/new-user-session.md.

    python scripts/new_user_session.py CLONE_DIR [--out docs/new-user-session.md]

Every command is copied from README.md or a subcommand's ``--help`` (the list below says which);
each runs in CLONE_DIR through ``bash -c``, and the transcript keeps its output (long outputs cut in
the middle), exit status and wall time. The script exits 1 if any output holds a Python traceback or
a command's exit status is not the one a user should see (0, or 2 for the refused inputs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# (where the command comes from, the command, the exit status a user should see)
SESSION: list[tuple[str, str, int]] = [
    ("README, Two commands", "make demo", 0),
    ("README, Everyday use", ".venv/bin/grpolab status demo", 0),
    ("README, Everyday use", ".venv/bin/grpolab --help", 0),
    ("grpolab config --help", ".venv/bin/grpolab config --groups", 0),
    ("README, Everyday use", ".venv/bin/grpolab config algorithm=gspo | head -n 12", 0),
    ("grpolab config --help", ".venv/bin/grpolab config --cfg job algorithm=gspo | tail -n 3", 0),
    ("grpolab config --help", ".venv/bin/grpolab config --info | head -n 20", 0),
    ("README, Everyday use", ".venv/bin/grpolab train algorithm=dr_grpo train.steps=50", 0),
    ("README, Everyday use", ".venv/bin/grpolab sweep --dry-run experiment=demo", 0),
    ("README, Results", ".venv/bin/grpolab table demo --cols algorithm.kl.coef --format all", 0),
    ("README, Results", ".venv/bin/grpolab plot outputs/sweeps/demo", 0),
    ("README, Results", ".venv/bin/grpolab report outputs/sweeps/demo", 0),
    ("a typo", ".venv/bin/grpolab sweep algorithm.kl.cof=0,0.1 sweep.id=typo", 2),
    ("a Hydra habit", ".venv/bin/grpolab train -m algorithm.kl.coef=0,0.1", 2),
    ("a Hydra habit", ".venv/bin/grpolab train hydra.run.dir=/tmp/x", 2),
    ("a sweep that does not exist", ".venv/bin/grpolab table nosuchsweep", 2),
    ("a broken pipe", ".venv/bin/grpolab status demo | head -n 1", 0),
]

KEEP = 60  # lines of output kept (head and tail) per command


def _cut(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= KEEP:
        return "\n".join(lines)
    half = KEEP // 2
    return "\n".join([*lines[:half], f"[… {len(lines) - KEEP} lines cut …]", *lines[-half:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a clean clone of the repository (git clone URL DIR)")
    parser.add_argument("--out", type=Path, default=Path("docs/new-user-session.md"))
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(args.clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    parts = [f"# A new user's session\n\nEvery command below was copied from README.md or a subcommand's "
             f"`--help` and run, in this order, on a clean clone at commit `{commit}` (2-core machine, no "
             f"GPU). Regenerate with `python scripts/new_user_session.py CLONE_DIR`.\n"]
    bad = []
    for source, command, expected in SESSION:
        t0 = time.time()
        # pipefail off: `| head` is part of what the user typed, the exit status is the pipeline's
        out = subprocess.run(["bash", "-c", command], cwd=args.clone, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # one stream, in the order a terminal shows
        wall = time.time() - t0
        text = out.stdout
        problem = []
        if "Traceback (most recent call last)" in text:
            problem.append("a traceback")
        if out.returncode != expected:
            problem.append(f"exit {out.returncode}, expected {expected}")
        if problem:
            bad.append(f"{command}: {', '.join(problem)}")
        parts.append(f"## `{command}`\n\n*{source}* · exit {out.returncode} · {wall:.1f} s"
                     + (f" · **{', '.join(problem)}**" if problem else "") + f"\n\n```text\n{_cut(text)}\n```\n")
        print(f"{out.returncode:>3}  {wall:6.1f}s  {command}", flush=True)
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")
    for line in bad:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
