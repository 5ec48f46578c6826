"""``grpolab power <sweep>``: per comparison of the sweep's ablation table, the minimum detectable
effect at the present seeds, the power for ``--delta`` and the seeds it needs (``analysis.power``).

It reads the sweep as ``grpolab table`` does, with the same layout and test options, so its rows are
the table's comparisons and its planning level is the table's correction over them.
"""
from __future__ import annotations

import argparse
import math
import sys

from analysis import power, power_render
from analysis.cli_args import add_table_args, dry_run_line, epilog, parse_baseline
from analysis.sources import resolve_source
from analysis.table import add_stats_args, build_table

FORMATS = ("md", "csv")
EXAMPLES = [
    ("grpolab power outputs/sweeps/lopti --delta 0.02", "per comparison: SD, MDE, power and seeds for Δ = 0.02"),
    ("grpolab power lopti --metrics final_eval_accuracy,final_reward --delta final_eval_accuracy=0.02,"
     "final_reward=0.05 --power 0.9", "a Δ per metric, 90% power"),
    ("grpolab power kl --rows algorithm.kl.coef --baseline algorithm.kl.coef=0.0 --format csv --delta 0.02",
     "tidy CSV"),
    ("grpolab power kl --sd 0.03 --delta 0.02 --comparisons 12", "plan from a pilot SD for a 12-comparison "
                                                                  "table"),
]


def _number(text: str, what: str, low: float, high: float, closed_low: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (low <= value if closed_low else low < value) and value < high
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r}: {what}")
    return value


def probability(text: str) -> float:
    """``--power`` / ``--alpha``: a number strictly between 0 and 1."""
    return _number(text, "must be a number strictly between 0 and 1", 0.0, 1.0)


def per_metric(text: str) -> dict:
    """``--delta`` / ``--sd``: a positive number for every metric, or ``metric=value,...``
    ({None: value} or {metric: value})."""
    out = {}
    for part in [p.strip() for p in text.split(",") if p.strip()] or [text]:
        metric, sep, value = part.rpartition("=")
        if sep and not metric.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0 or metric=number,...")
        try:
            out[metric.strip() if sep else None] = _number(value, "", 0.0, math.inf)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a number > 0 (metric units), or "
                                             "metric=number,...") from None
    return out


def comparisons(text: str) -> int:
    """``--comparisons``: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer ≥ 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpolab power", description="Power and seeds of a sweep's ablation "
                                     "table: per comparison with the baseline, the SD of the per-seed differences, "
                                     "the minimum detectable effect at the present seeds, and the power and seeds "
                                     "needed for a difference --delta, at the table's multiplicity correction.",
                                     epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser)
    add_stats_args(parser)
    parser.add_argument("--delta", type=per_metric, default=None,
                        help="the difference to detect, in the metric's units: one number for every metric, or "
                             "metric=number,... (without it: the MDE only)")
    parser.add_argument("--power", type=probability, default=power.POWER, help="target power (default 0.8)")
    parser.add_argument("--alpha", type=probability, default=power.ALPHA,
                        help="the table's level before the correction (family-wise for holm), two-sided (default 0.05)")
    parser.add_argument("--sd", type=per_metric, default=None,
                        help="pilot SD to plan with instead of the estimate (paired: of the per-seed differences; "
                             "Welch: of each cell): one number or metric=number,...")
    parser.add_argument("--comparisons", type=comparisons, default=None,
                        help="family size m to plan for (default: the comparisons of this table)")
    parser.add_argument("--format", default="md", choices=FORMATS, help="md (default) or csv")
    return parser


def _check_metrics(option: str, values: dict | None, metrics) -> None:
    for m in values or {}:
        if m is not None and m not in metrics:
            raise ValueError(f"{option} names metric {m!r}, not in this table; its metrics: {', '.join(metrics)}")


def plan_sweep(args) -> power.PowerTable:
    """Build the sweep's table (``analysis.table.build_table``: validation, pairing, tests) and plan it."""
    baseline = parse_baseline(args.baseline)
    if baseline is False:
        raise ValueError("--baseline none: power compares cells with a baseline; give key=value or leave it out")
    source = resolve_source(args.sweep_dir, args.root)
    table = build_table(source, args.metrics, args.rows, args.cols, baseline, test=args.test,
                        correction=args.correction, digits=args.digits)
    metrics = table.summary.attrs["metrics"]
    _check_metrics("--delta", args.delta, metrics)
    _check_metrics("--sd", args.sd, metrics)
    return power.plan_table(table.summary, args.delta, args.power, args.alpha, args.sd, args.comparisons)


def main(argv=None) -> int:
    """CLI: ``grpolab power SWEEP [--delta D|metric=D,...] [--power 0.8] [--alpha 0.05] [--sd S]
    [--comparisons M] [table layout and test options] [--format md|csv]``."""
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            source = resolve_source(args.sweep_dir, args.root)
            if getattr(source, "root", None) is not None:  # the keys checked against the records
                plan_sweep(args)
            print(dry_run_line("power", source, []))
            return 0
        planned = plan_sweep(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(power_render.csv(planned) if args.format == "csv" else power_render.markdown(planned, args.digits), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
