"""GPU only: the synchronous GRPO step against lagged ones (``rollout.async_steps``), one fresh process each.

    python -m benchmarks.gpu_async [--out PATH] [OVERRIDE ...]

Arms, each ``benchmarks.gpu_step``'s run (Qwen2.5-0.5B-sized body, DeepSpeed ZeRO-2 bf16, HF generate,
4 steps): k = 0; k = 1 with the inline sampler (lockstep without overlap: what the schedule itself
costs); k = 1 with the worker process on the same GPU (the overlap). Each arm runs in its own Python
process, so peak memory is its own. Prints and writes a Markdown table: step, rollout and update times,
tokens/s, update MFU, peak memory, trainer wait and worker idle. Sized for ≤ 8 minutes on an H200.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ARMS = {
    "sync (k=0)": [],
    "k=1 inline": ["rollout.async_steps=1", "rollout.async_worker=inline"],
    "k=1 worker process": ["rollout.async_steps=1", "rollout.async_worker=process"],
}
COLUMNS = ("step_s_median", "rollout_s_median", "update_s_median", "rollout_tokens_per_s", "update_tokens_per_s",
           "update_mfu_pct", "peak_gpu_mem_gib", "async/trainer_wait_s", "async/sampler_idle_frac")


def run_arm(overrides: list[str], timeout_s: int) -> dict:
    code = ("import json, sys; from benchmarks.gpu_step import measure; "
            "print('@@' + json.dumps(measure(sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not lines:
        return {"status": "failed", "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1][2:])


def render(results: dict[str, dict]) -> str:
    first = next((r for r in results.values() if "device" in r), {})
    lines = ["# GRPO step on a GPU: synchronous against lagged rollouts", "",
             f"- device: {first.get('device', '?')}; engine: {first.get('engine', '?')}; "
             f"parameters: {first.get('params', '?')}", "",
             "| arm | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for arm, r in results.items():
        cells = [str(r.get(c, "—")) for c in COLUMNS] if "device" in r else [f"failed: {r.get('error', r)}"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_async", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu_async.md"))
    p.add_argument("--timeout", type=int, default=150, help="seconds per arm (default %(default)s)")
    p.add_argument("overrides", nargs="*", help="config overrides applied to every arm")
    args = p.parse_args(argv)
    results = {}
    for arm, extra in ARMS.items():
        try:
            results[arm] = run_arm([*args.overrides, *extra], args.timeout)
        except subprocess.TimeoutExpired:
            results[arm] = {"status": "failed", "error": f"over {args.timeout} s"}
        print(f"[gpu_async] {arm}: {json.dumps(results[arm])}", flush=True)
    text = render(results)
    args.out.write_text(text)
    print(text)
    return 0 if all("device" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
