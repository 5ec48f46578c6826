"""The ``trl_compare`` report: per-round throughputs, their grpolab ÷ TRL ratios, the Markdown."""

from __future__ import annotations

import statistics
from typing import Optional, Sequence

from benchmarks.machine import torch_environment
from benchmarks.report import bullets, command_line, markdown_table
from benchmarks.stats import Ratio, verdict
from benchmarks.trl_settings import Settings

GOAL = 1.5  # grpolab end-to-end completion tokens/s ≥ GOAL × TRL's
KEYS = ("step_s", "rollout_s", "sampling_s", "update_s")


def per_round(rows: list[dict], who: str) -> dict[str, list[float]]:
    out = {k: [r[who][k] for r in rows] for k in KEYS + ("completion_tokens", "prompt_tokens")}
    c, p = out["completion_tokens"], out["prompt_tokens"]
    out["e2e_tps"] = [ci / s for ci, s in zip(c, out["step_s"])]
    out["e2e_total_tps"] = [(ci + pi) / s for ci, pi, s in zip(c, p, out["step_s"])]
    out["rollout_tps"] = [ci / s for ci, s in zip(c, out["rollout_s"])]
    out["sampling_tps"] = [ci / s for ci, s in zip(c, out["sampling_s"])]
    out["update_tps"] = [ci / s for ci, s in zip(c, out["update_s"])]  # × μ on both: the ratio is unchanged
    return out


ROWS = [  # (label, key, is a rate: ratio = grpolab / TRL; else a time: ratio = TRL / grpolab = speed-up)
    ("step s (end to end)", "step_s", False),
    ("rollout+scoring s", "rollout_s", False),
    ("of which sampling (model.generate) s", "sampling_s", False),
    ("update s", "update_s", False),
    ("completion tokens per step", "completion_tokens", None),
    ("**end-to-end completion tokens/s**", "e2e_tps", True),
    ("end-to-end total tokens/s (prompt + completion)", "e2e_total_tps", True),
    ("rollout+scoring completion tokens/s", "rollout_tps", True),
    ("sampling completion tokens/s", "sampling_tps", True),
    ("update completion tokens/s", "update_tps", True),
]


def summarize(rows: list[dict]) -> tuple[str, Ratio]:
    """The table of medians and ratios, and the end-to-end ratio (the headline)."""
    g, t = per_round(rows, "grpolab"), per_round(rows, "trl")
    lines, e2e = [], None
    for label, key, rate in ROWS:
        gm, tm = statistics.median(g[key]), statistics.median(t[key])
        if rate is None:
            ratio = "—"
        else:
            r = Ratio.of([a / b if rate else b / a for a, b in zip(g[key], t[key])])
            ratio = r.text()
            if key == "e2e_tps":
                e2e = r
        fmt = (lambda v: f"{v:,.0f}") if rate is not False else (lambda v: f"{v:.3f}")
        lines.append([label, fmt(gm), fmt(tm), ratio])
    header = ["per GRPO step (median)", "grpolab", "TRL", "grpolab ÷ TRL throughput [90% CI]"]
    return markdown_table(header, "lrrr", lines), e2e


def render(argv: Optional[Sequence[str]], threads: int, threads_seen: set[int], s: Settings, facts: dict,
           table: str, e2e: Ratio, overrides: tuple[str, ...] = ()) -> str:
    cmd = command_line("python -m benchmarks.trl_compare", argv)
    env = torch_environment(threads, ("trl", "transformers", "accelerate"), threads_seen)
    return "\n".join([
        "## grpolab vs TRL `GRPOTrainer`: GRPO-step throughput",
        "",
        f"`{cmd}`",
        "",
        f"End-to-end completion tokens/s, grpolab ÷ TRL: **{e2e.text()}** "
        f"(goal ≥ {GOAL:g}×: {verdict(e2e, GOAL, at_least=True)}).",
        "",
        table,
        "",
        "Times: medians over the measured steps. Throughput ratios: median over rounds of grpolab ÷ TRL in the same",
        "round (for times, TRL ÷ grpolab: the speed-up), [90% bootstrap interval]. rollout+scoring = sampling, "
        "decoding,",
        "rewards, the π_old forward and advantages (TRL: `_generate_and_score_completions`); update = the rest of the",
        "step (TRL: its Trainer loop, batch fetching, loss forward/backward, clipping, AdamW).",
        "",
        "Settings (the same on both):",
        "",
        *[f"- {line}" for line in s.lines()],
        *([f"- grpolab overrides on top: {' '.join(overrides)}"] if overrides else []),
        "",
        "Environment:",
        "",
        *bullets(env + list(facts.items())),
    ])
