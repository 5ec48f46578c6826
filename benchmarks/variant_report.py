"""The ``variant_overhead`` report: medians per variant, paired ratios against the baseline, verdicts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

from benchmarks.machine import torch_environment
from benchmarks.report import bullets, command_line, markdown_table
from benchmarks.stats import Ratio, verdict
from benchmarks.variant_cases import Case

PHASES = ("time/step_s", "time/rollout_s", "time/update_s")


@dataclass
class Result:
    case: Case
    medians: dict[str, float]
    step_ratio: Optional[Ratio] = None
    update_ratio: Optional[Ratio] = None
    updated_frac: float = 1.0

    def verdict(self) -> str:
        """pass / miss on the median ratio; flagged when the 90% interval crosses the goal."""
        g = self.case.goal
        if g is None:
            return "—"
        r = self.step_ratio if g.phase == "step" else self.update_ratio
        return verdict(r, g.max_ratio, miss_note=f" (+{(r.median / g.max_ratio - 1) * 100:.1f}%)")


def summarize(runners) -> list[Result]:
    """One result per runner (``.case``, ``.rows``: one dict of ``PHASES`` and ``train/updated`` per
    measured round), its ratios taken round by round against its baseline's rows."""
    by_name = {r.case.name: r for r in runners}
    out = []
    for r in runners:
        res = Result(
            r.case,
            {k: statistics.median(row[k] for row in r.rows) for k in PHASES},
            updated_frac=sum(row["train/updated"] for row in r.rows) / len(r.rows),
        )
        if r.case.baseline:
            base = by_name[r.case.baseline].rows
            res.step_ratio = Ratio.of([a["time/step_s"] / b["time/step_s"] for a, b in zip(r.rows, base)])
            res.update_ratio = Ratio.of([a["time/update_s"] / b["time/update_s"] for a, b in zip(r.rows, base)])
        out.append(res)
    return out


def table(results: list[Result]) -> str:
    header = ["variant", "baseline", "step s", "rollout+scoring s", "update s", "step × baseline",
              "update × baseline", "goal", "result"]
    rows = []
    for r in results:
        m = r.medians
        name = r.case.name + ("" if r.updated_frac == 1 else f" (updated in {r.updated_frac:.0%} of steps)")
        rows.append([
            name, r.case.baseline or "*(baseline)*",
            f"{m['time/step_s']:.3f}", f"{m['time/rollout_s']:.3f}", f"{m['time/update_s']:.3f}",
            r.step_ratio.text() if r.step_ratio else "—", r.update_ratio.text() if r.update_ratio else "—",
            r.case.goal.text() if r.case.goal else "—", r.verdict(),
        ])
    return markdown_table(header, "llrrrrrll", rows)


def render(argv: Optional[Sequence[str]], threads: int, facts: dict[str, str], results: list[Result]) -> str:
    cmd = command_line("python -m benchmarks.variant_overhead", argv)
    overrides = [f"- `{r.case.name}`: `{' '.join(r.case.overrides)}`" for r in results]
    return "\n".join([
        "# Variant overhead vs the GRPO baseline",
        "",
        f"`{cmd}`",
        "",
        *bullets(torch_environment(threads) + list(facts.items())),
        "",
        table(results),
        "",
        "Seconds per step, medians over the measured rounds. `rollout+scoring` is `time/rollout_s` (sampling,",
        "rewards, the π_old forward with NTHR's scores, advantages, reward-balanced buffering); `update` is",
        "`time/update_s` (the mini-batch updates, and diagnostics when on). `× baseline`: median over rounds of",
        "variant / baseline in the same round, [90% bootstrap interval]. A result is marked *within noise* when",
        "that interval crosses the goal. `grpo_again` is an identical copy of `grpo`: its ratios show the noise "
        "floor.",
        "",
        "Overrides of each variant (composed with `sweeps.compose.compose`):",
        "",
        *overrides,
    ])
