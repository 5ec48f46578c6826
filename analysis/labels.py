"""What a table, plot or report calls a swept key or a metric: ``--label KEY=TEXT`` where given,
else a readable default for metrics (``final_eval_accuracy`` → "final eval accuracy"); swept keys
keep their config name. CSV always keeps the raw keys, so a script reading it never depends on a
label.

    grpolab table SWEEP --label algorithm.kl.coef=β --label final_eval_accuracy=Accuracy
    grpolab plot  SWEEP --label algorithm.kl.coef=β,variant=method
"""
from __future__ import annotations

import argparse
import re

from analysis.history import is_history_metric, parse_metric

# Summary keys whose generic name ("warmstart eval accuracy") reads worse than a written one.
READABLE = {
    "warmstart_eval_accuracy": "warm-start eval accuracy",
    "wall_time_s": "wall time (s)",
    "steps_completed": "steps completed",
}


def readable(key: str) -> str:
    """The default display name of a metric: underscores as spaces, a trailing ``_s`` as "(s)"; a
    history aggregate ``mean:diag/lld_mean`` → "mean of diag/lld_mean" (a history key keeps its
    slash-separated name, which is what W&B and ``metrics.jsonl`` call it)."""
    if key in READABLE:
        return READABLE[key]
    if is_history_metric(key) and ":" in key:
        agg, inner = parse_metric(key)
        return f"{agg} of {inner}"
    if "/" in key:
        return key
    return re.sub(r"_s$", " (s)", key).replace("_", " ")


def parse_labels(values) -> dict:
    """``--label`` values (repeated, each ``KEY=TEXT`` or a comma list of them) → {key: text}.
    A comma starts a new pair only where ``KEY=`` follows, so a label may hold commas."""
    out: dict = {}
    for text in values or []:
        for part in re.split(r",(?=[^,=]+=)", text):
            key, sep, label = part.partition("=")
            if not sep or not key.strip() or not label.strip():
                raise ValueError(f"--label {text!r}: expected KEY=TEXT[,KEY=TEXT...] (a swept key or a metric)")
            out[key.strip()] = label.strip()
    return out


def check_labels(labels: dict, valid) -> None:
    """ValueError naming the first label key that is neither a swept key nor a metric shown."""
    valid = list(dict.fromkeys(valid))
    for key in labels:
        if key not in valid:
            raise ValueError(f"--label {key}={labels[key]}: unknown key {key!r}; valid: {', '.join(valid) or '(none)'}")


def name(key: str, labels: dict | None, metric: bool = True) -> str:
    """The shown name of ``key``: its label, else ``readable(key)`` for a metric, the key itself
    for a swept key (``metric=False``)."""
    if labels and key in labels:
        return labels[key]
    return readable(key) if metric else key


def add_label_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", action="append", default=None, metavar="KEY=TEXT",
                        help="show a swept key or a metric under another name in headers, legends and captions "
                             "(repeatable, or KEY=TEXT,KEY2=TEXT2); e.g. --label algorithm.kl.coef=β. "
                             "Metrics default to readable names (final eval accuracy); CSV keeps the raw keys")
