"""``grpolab aggregate``: a sweep's cells aggregated across tasks (the values of one swept key):
IQM, mean and median with stratified bootstrap intervals, the probability of improving on a
baseline cell, and, with ``--plot``, the performance profiles (``analysis.aggregate``,
``analysis.profile_plot``; after rliable, Agarwal et al., 2021, arXiv:2108.13264).

    grpolab aggregate SWEEP --over task [--metric final_eval_accuracy] [--rows k1,k2] [--baseline k=v|none]
                      [--format md|csv|latex] [--out FILE] [--plot DIR] [--reps 2000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.aggregate import FORMATS, render_summary, summarize_tasks, task_scores
from analysis.aggregate_stats import REPS
from analysis.cli_args import add_source_args, csv_list, digits, dry_run_line, epilog, parse_baseline
from analysis.sources import resolve_source, runs_frame

EXAMPLES = [
    ("grpolab aggregate outputs/sweeps/tasks --over task", "IQM, mean, median, P(> baseline) across tasks"),
    ("grpolab aggregate tasks --over task --metric best_eval_accuracy --baseline variant=grpo --format latex",
     "LaTeX, another metric"),
    ("grpolab aggregate tasks --over task --plot outputs/sweeps/tasks/plots", "and the performance profile "
                                                                                  "(PNG, PDF, SVG)"),
]


def reps(text: str) -> int:
    """``--reps``: an integer from 100 to 1,000,000 (argparse names the option and the value otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 100 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer from 100 to 1000000")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpolab aggregate", epilog=epilog(EXAMPLES), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A sweep's cells aggregated across tasks (the values of the --over key), as rliable does "
                    "(arXiv:2108.13264): IQM, mean and median with 95%% stratified bootstrap CIs (each task's runs "
                    "resampled), P(improvement) over a baseline cell, and performance profiles.")
    add_source_args(parser)
    parser.add_argument("--over", default=None,
                        help="required: the swept key whose values are the tasks aggregated over (e.g. task); "
                             "needs >= 2 values")
    parser.add_argument("--metric", default="final_eval_accuracy",
                        help="summary key or history metric scored per run (default final_eval_accuracy)")
    parser.add_argument("--rows", type=csv_list, default=None,
                        help="swept keys naming a cell (default: every swept key but --over; others are pooled)")
    parser.add_argument("--baseline", default=None,
                        help="baseline cell of P(improvement): key=value,... (default: the plan's first run), "
                             "or 'none'")
    parser.add_argument("--format", default="md", choices=FORMATS, help="output format (default md)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--plot", default=None, metavar="DIR",
                        help="write the performance profile to DIR/performance_profile_<metric>.{png,pdf,svg}")
    parser.add_argument("--reps", type=reps, default=REPS, help=f"bootstrap resamples (default {REPS})")
    parser.add_argument("--digits", type=digits, default=3, help="digits after the decimal point (default 3)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        source = resolve_source(args.sweep_dir, args.root)
        baseline = parse_baseline(args.baseline)
        if args.over is None and getattr(source, "root", None) is None:
            raise ValueError("--over: missing; give the swept key whose values are the tasks (e.g. --over task)")
        if args.dry_run:
            if getattr(source, "root", None) is not None:  # the keys checked against the records
                scores = task_scores(runs_frame(source), args.metric, args.over, args.rows, source)
                summarize_tasks(scores, baseline, reps=100)
            plots = [f"{args.plot}/performance_profile_*.{{png,pdf,svg}}"] if args.plot else []
            print(dry_run_line("aggregate", source, ([args.out] if args.out else []) + plots))
            return 0
        scores = task_scores(runs_frame(source), args.metric, args.over, args.rows, source)
        text = render_summary(summarize_tasks(scores, baseline, reps=args.reps), args.format, args.digits)
        written = []
        if args.plot:
            from analysis.profile_plot import write_profile

            written = write_profile(scores, args.plot, reps=args.reps)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
        written.insert(0, Path(args.out))
    if written:
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
