"""The command-line arguments table, plot and report share: the sweep they read (a dir, a sweep id
under ``--root``, a tune study, ``wandb://...``), ``--dry-run``, the table layout options, and the
examples ending each ``--help``."""
from __future__ import annotations

import argparse
import re

from analysis.sources import runs_frame


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """The sweep argument, ``--root`` and ``--dry-run`` of table, plot and report."""
    parser.add_argument("sweep_dir", help="a sweep dir (grid or tune), a sweep id or tune study name under --root, "
                                          "or wandb://ENTITY/PROJECT/SWEEP_ID (the W&B runs of that project whose "
                                          "group is the sweep id)")
    parser.add_argument("--root", default="outputs", help="paths.output_root a sweep id is looked up under: "
                                                          "<root>/sweeps/<id>, then <root>/tune/<id> (default outputs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="resolve the sweep and check the arguments against its records; say what would be "
                             "read and written, write nothing")


def epilog(examples: list[tuple[str, str]]) -> str:
    return "examples:\n" + "\n".join(f"  {cmd}    # {text}" for cmd, text in examples)


def digits(text: str) -> int:
    """``--digits``: an integer from 0 to 12 (argparse names the option and the value otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 12:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer from 0 to 12")
    return value


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_baseline(text: str | None):
    """``k=v,k2=v2`` → {k: v}; ``none`` → False (no Δ column); None → default baseline."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return False
    out = {}
    for part in re.split(r",(?=[^,=]+=)", text):  # a value may itself contain commas
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--baseline {text!r}: expected key=value[,key=value...] or 'none'")
        out[key.strip()] = value.strip()
    return out


def add_table_args(parser: argparse.ArgumentParser) -> None:
    add_source_args(parser)
    parser.add_argument("--metrics", type=csv_list, default=None,
                        help="comma-separated summary keys or history metrics (final_pass@k, "
                             "diag/lld_mean = last value, mean:diag/lld_mean, max:train/reward)")
    parser.add_argument("--rows", type=csv_list, default=None,
                        help="swept keys down the rows (default: all not in --cols)")
    parser.add_argument("--cols", type=csv_list, default=None, help="swept keys across the columns")
    parser.add_argument("--baseline", default=None,
                        help="baseline cell for Δ: key=value,... (default: the plan's first run), or 'none'")
    parser.add_argument("--digits", type=digits, default=3,
                        help="digits after the decimal point of means, CIs and Δ (default 3)")


def dry_run_line(command: str, source, writes) -> str:
    """What ``grpolab <command>`` would read and write (a dir source's records are counted, read-only)."""
    root = getattr(source, "root", None)
    read = f"the {len(runs_frame(source))} run records under {root}" if root is not None else \
        f"the W&B runs of {getattr(source, 'url', source.name)} (not fetched in a dry run)"
    out = ", ".join(map(str, writes)) or "nothing (stdout only)"
    return f"dry run: grpolab {command} would read {read} and write {out}"
