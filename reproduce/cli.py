"""``grpolab reproduce <paper>|all [--quick] [--dry-run] [overrides...]``: a paper's claims put to the
test through the framework (docs/reproductions.md)."""
from __future__ import annotations

import argparse
import sys

from analysis.cli_args import epilog
from trainer.knobs import ConfigError

EXAMPLES = [
    ("grpolab reproduce lopti", "the Lopti paper: probes, K&K ablation, verdicts (~20 min on 2 cores)"),
    ("grpolab reproduce all --quick", "every paper, few seeds and steps (verdicts marked quick)"),
    ("grpolab reproduce lopti launcher=slurm", "the ablation's runs as SLURM jobs, the probe here"),
    ("grpolab reproduce lopti --quick paths.output_root=/tmp/repro", "somewhere else"),
]


def _papers():
    from reproduce import cancellation, dfpo, lopti, nthr  # noqa: F401  (they register)
    from reproduce.paper import REGISTRY

    return REGISTRY


def build_parser(papers=None) -> argparse.ArgumentParser:
    papers = _papers() if papers is None else papers
    p = argparse.ArgumentParser(
        prog="grpolab reproduce", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog(EXAMPLES),
        description="Run a paper's preset sweep and single-update probes, then write a report that sets each of "
                    "its claims beside grpolab's measurement with a verdict: reproduced, not reproduced or "
                    "inconclusive, by the rule stated beside it. Report: <paths.output_root>/reproduce/<paper>/.")
    p.add_argument("paper", help=f"one of: {', '.join([*papers, 'all'])}")
    p.add_argument("--quick", action="store_true", help="fewer seeds, steps and probe batches (minutes; verdicts "
                                                        "marked quick)")
    p.add_argument("--dry-run", action="store_true", help="compose every config, say what would run; run nothing")
    p.add_argument("overrides", nargs="*", help="config overrides for the sweep's runs and the probe "
                                                "(launcher=slurm, paths.output_root=DIR, ...)")
    return p


def verdict_lines(out) -> str:
    """The report's claims table and where the report is."""
    import json

    from reproduce.report import summary_table, timing_text

    data = json.loads((out / "claims.json").read_text())
    return (f"\n{data['meta']['title']}: {out / 'report.md'}\n{timing_text(data['meta']['timing'])}.\n\n"
            f"{summary_table(data['claims'])}\n")


def _dry_run(names, quick, overrides) -> int:
    from reproduce.paper import REGISTRY
    from reproduce.run import out_dir, sweep_id
    from sweeps.cli import main as cli_main
    from sweeps.compose import compose

    for name in names:
        paper = REGISTRY[name]
        plan = paper.plan(quick)
        for sweep_name, sweep in plan.sweeps:
            code = cli_main(["sweep", "--dry-run", *sweep, f"sweep.id={sweep_id(paper, quick, sweep_name)}",
                             *overrides])
            if code:
                return code
        if paper.probe is not None:
            compose([*plan.probe, *overrides])
            print(f"probe: {len(plan.probe_seeds)} batches of {' '.join(plan.probe)}")
        print(f"dry run: grpolab reproduce {name} would write {out_dir(paper, quick, overrides)}/"
              "{claims.json,report.md,report.html,*.png}")
    return 0


def main(argv=None) -> int:
    papers = _papers()
    args = build_parser(papers).parse_intermixed_args(argv)
    if args.paper not in (*papers, "all"):
        print(f"grpolab reproduce: paper {args.paper!r}: valid: {', '.join([*papers, 'all'])}", file=sys.stderr)
        return 2
    names = list(papers) if args.paper == "all" else [args.paper]
    try:
        if args.dry_run:
            return _dry_run(names, args.quick, args.overrides)
        from reproduce.run import reproduce

        worst, done = 0, []
        for name in names:
            out, code = reproduce(name, args.quick, args.overrides)
            done.append(out)
            worst = max(worst, code)
        text = "\n".join(verdict_lines(out) for out in done)
        print(text)
        if args.paper == "all":  # one page with every paper's verdicts and wall time
            from reproduce.run import output_root
            from trainer.run_record import atomic_write_text

            path = output_root(args.overrides) / "reproduce" / ("summary-quick.md" if args.quick else "summary.md")
            atomic_write_text(path, "# grpolab reproduce all" + (" --quick" if args.quick else "") + "\n" + text)
            print(f"summary: {path}")
        return worst
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grpolab reproduce: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
