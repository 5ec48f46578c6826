"""The arguments of ``grpolab``: every subcommand's options, their help, and its examples.

Each subcommand's ``--help`` ends with examples (an epilog); ``tests/test_cli_help.py`` runs every
one of them with ``--dry-run``, and checks README.md's commands are among them. An argument error
prints the usage of the subcommand it belongs to (argparse's top level would print its own).
"""

from __future__ import annotations

import argparse

OVERRIDES_HELP = ("Hydra overrides: key=value (algorithm.kl.coef=0.01), a group choice (algorithm=gspo), "
                  "+key=value to add, ~key to delete; grpolab config --groups lists the groups")
SWEEP_OVERRIDES_HELP = ("Hydra overrides, as for train; key=a,b,c, range(3) or choice(a,b) make an axis of the "
                        "grid, seeds are the axis seed=0,1,2 (or sweep.seeds)")
ROOT_HELP = "paths.output_root the sweep id is looked up under: <root>/sweeps/<id>, then <root>/tune/<id> " \
            "(default outputs)"
SWEEP_ARG_HELP = "a sweep dir (grid or tune), or a sweep id / tune study name under --root"

EXAMPLES = {
    "config": [
        ("grpolab config algorithm=gspo", "print the composed, validated config"),
        ("grpolab config --groups", "every config group, its options and what each is"),
        ("grpolab config --info algorithm=gspo", "search path, groups and the defaults list"),
        ("grpolab config --cfg all experiment=demo", "the config and the hydra: node Hydra adds"),
    ],
    "train": [
        ("grpolab train algorithm=dr_grpo train.steps=50", "one run -> outputs/runs/<time>/"),
        ("grpolab train '+algorithm/features=[adv_reweight,nthr]' batching=query_preserved", "two features on"),
        ("grpolab train tracker=wandb tracker.project=grpolab", "W&B, offline unless a key is configured"),
        ("grpolab train --run-dir outputs/runs/mine seed=1", "the record into a dir of your choice"),
        ("grpolab train --dry-run algorithm=gspo", "compose, validate, say where the record would go"),
        ("grpolab train --cfg job algorithm=gspo", "print the config, run nothing"),
    ],
    "sweep": [
        ("grpolab sweep algorithm.kl.coef=0,0.01,0.05 seed=0,1,2 sweep.id=kl", "grid × seeds"),
        ("grpolab sweep --dry-run experiment=demo", "validate and list every cell, run nothing"),
        ("grpolab sweep --append algorithm.kl.coef=0.1 seed=0,1,2 sweep.id=kl", "add cells to sweep kl's plan"),
        ("grpolab sweep variant=grpo,ar,lopti,ar_lopti seed=0,1 sweep.id=lopti", "variants × seeds"),
        ("grpolab sweep experiment=nthr_paper", "a paper's grid (also lopti_paper, cancellation_paper, dfpo_paper)"),
        ("grpolab sweep --info variant=grpo,ar", "groups and the first cell's defaults list"),
        ("grpolab sweep --until-resolved --max-seeds 8 variant=grpo,ar,lopti seed=0,1 sweep.id=lopti_adaptive",
         "add 2 seeds a round to unresolved cells, up to 8"),
    ],
    "status": [
        ("grpolab status kl", "sweep kl under outputs/sweeps/"),
        ("grpolab status outputs/sweeps/kl", "the same, by its dir"),
        ("grpolab status --root outputs kl_search", "a tune study's runs (outputs/tune/kl_search)"),
    ],
    "collect": [
        ("grpolab collect kl", "wait for every cell of sweep kl, then its table"),
        ("grpolab collect --timeout 3600 outputs/sweeps/kl", "give up after an hour (exit 3)"),
    ],
    "tune": [
        ("grpolab tune '++tune.space={algorithm.kl.coef: \"float:1e-4:1e-1:log\"}' tune.n_trials=20 "
         "sweep.seeds=[0,1]", "Optuna over kl.coef, each trial 2 seeds"),
        ("grpolab tune --dry-run '++tune.space={algorithm.clip.high: \"float:0.2:0.3\"}' tune.n_trials=8 "
         "sweep.id=kl_search", "validate the space, list the trials planned"),
    ],
}


def seconds(text: str) -> float:
    """A number of seconds > 0 (argparse names the option and the value otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number of seconds > 0")
    return value


ADAPTIVE_FLAGS = ("--until-resolved", "--max-seeds", "--seed-step")


def epilog(command: str) -> str:
    """``examples:`` and one indented line per example, its comment after ``#``."""
    lines = EXAMPLES.get(command, [])
    return "examples:\n" + "\n".join(f"  {cmd}    # {text}" for cmd, text in lines)


def _hydra_habits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", choices=("job", "all"), default=None,
                   help="print the composed config and exit, running nothing: job = grpolab's config as "
                        "`grpolab config` prints it; all = that plus the hydra: node Hydra composes beside it")
    p.add_argument("--info", action="store_true",
                   help="print the config search path, the config groups and their options, and the defaults "
                        "list these overrides compose; exit, running nothing")


def _sub(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, epilog=epilog(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser(doc: str) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and {subcommand: its parser}."""
    parser = argparse.ArgumentParser(prog="grpolab", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    p = subs["train"] = _sub(sub, "train", "one run in this process",
                             "Train one run in this process and write its run record.")
    p.add_argument("--run-dir", help="where the run record goes (default <paths.output_root>/runs/<time>); "
                                     "an unfinished record there is resumed")
    p.add_argument("--dry-run", action="store_true",
                   help="compose and validate the config, say where the record would go, run nothing")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="Hydra's multirun: grpolab train runs one config (a grid is grpolab sweep)")
    _hydra_habits(p)
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p = subs["sweep"] = _sub(sub, "sweep", "run a grid of cells, then print the ablation table",
                             "Compose and validate every cell of a grid, run the ones not completed (local "
                             "processes or SLURM jobs), then write and print the ablation table.")
    p.add_argument("-m", "--multirun", action="store_true", help="accepted for Hydra familiarity; sweeps always expand")
    p.add_argument("--dry-run", action="store_true", help="compose and validate every cell, list them, run nothing")
    p.add_argument("--append", action="store_true",
                   help="add this command's cells to an existing sweep's plan (its history is kept)")
    p.add_argument("--detach", action="store_true",
                   help="launcher=slurm: submit the job array and return at once (then grpolab status / collect)")
    p.add_argument("--until-resolved", action="store_true",
                   help="run the declared seeds, then add seeds in rounds to the cells whose Δ vs the baseline is "
                        "not yet significant, testing each look at α/L (docs/analysis.md#adaptive-seeds)")
    p.add_argument("--max-seeds", default=None,
                   help="with --until-resolved: the most seeds a cell gets (fixes the L looks the rule splits α over)")
    p.add_argument("--seed-step", default=None,
                   help="with --until-resolved: seeds added per round (default: as many as declared)")
    p.add_argument("--metric", default=None,
                   help="with --until-resolved: the metric that decides (default final_eval_accuracy)")
    _hydra_habits(p)
    p.add_argument("overrides", nargs="*", help=SWEEP_OVERRIDES_HELP)
    p = subs["config"] = _sub(sub, "config", "print the composed config",
                              "Print the composed, validated config (as a run's config.yaml records it) and its "
                              "hash; nothing runs.")
    p.add_argument("--groups", action="store_true", help="list every config group, its options and what each is")
    p.add_argument("--dry-run", action="store_true", help="the same as without it: config never runs anything")
    _hydra_habits(p)
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    for name, text in (("status", "state of each cell of a sweep (pending/running/completed/failed/preempted)"),
                       ("collect", "wait until every cell of a sweep has ended, then write and print its table")):
        p = subs[name] = _sub(sub, name, text, text[0].upper() + text[1:] + ".")
        p.add_argument("sweep", help=SWEEP_ARG_HELP)
        p.add_argument("--root", default="outputs", help=ROOT_HELP)
        p.add_argument("--dry-run", action="store_true",
                       help="resolve the sweep, say what would be read" + (" and written" if name == "collect" else "")
                            + "; wait for nothing, write nothing")
        if name == "collect":
            p.add_argument("--timeout", type=seconds, default=None, help="give up after this many seconds (exit 3)")
            p.add_argument("--poll", type=seconds, default=5.0, help="seconds between polls (default 5)")
    p = subs["tune"] = _sub(sub, "tune", "Optuna search over tune.space (seeds averaged, pruning at eval steps)",
                            "Optuna search over tune.space: each trial a cell run over sweep.seeds, its value the "
                            "mean over seeds; runs and study under <paths.output_root>/tune/<study> "
                            "(docs/tracking.md).")
    p.add_argument("--dry-run", action="store_true",
                   help="compose and validate the config and the space, list the trials planned, run nothing")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + "; tune.* set the study")
    for name, text in (("table", "ablation table of a sweep: Markdown/LaTeX/CSV/HTML"),
                       ("plot", "learning curves and diagnostics plots of a sweep, as PNG"),
                       ("report", "one self-contained HTML report of a sweep: tables and plots"),
                       ("aggregate", "IQM, P(improvement) and performance profiles across tasks"),
                       ("power", "per comparison of a sweep's table: detectable effect, power and seeds needed")):
        sub.add_parser(name, help=f"{text} (a dir, a sweep id or wandb://ENTITY/PROJECT/SWEEP_ID; "
                                  f"grpolab {name} --help)", add_help=False)
    sub.add_parser("reproduce", help="a paper's claims run through the framework, with verdicts (grpolab reproduce "
                                     "--help)", add_help=False)
    return parser, subs


def parse(argv: list[str], doc: str) -> argparse.Namespace:
    """Parse ``argv``; overrides after an option are kept (in order), anything else unknown is the
    subcommand's usage error (exit 2), naming it and the subcommand's options."""
    parser, subs = build_parser(doc)
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = subs[args.command]
        adaptive = [e for e in extra if e.split("=", 1)[0] in ADAPTIVE_FLAGS]
        if args.command == "tune" and adaptive:
            parser.exit(2, f"grpolab tune: {adaptive[0].split('=', 1)[0]} is an option of grpolab sweep (seeds added "
                           "to cells until their Δ vs a baseline cell resolves); a tune study has no baseline cell\n")
        if hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            options = sorted({s for a in sub._actions for s in a.option_strings if s.startswith("--")})
            sub.error(f"unrecognized arguments: {' '.join(extra)} (options of grpolab {args.command}: "
                      f"{', '.join(options)})")
    return args

