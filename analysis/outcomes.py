"""Per-prompt outcomes of the table's eval metrics, for pairing cells by prompt (``analysis.paired``).

``final_eval_accuracy`` is the mean over held-out prompts of ``correct / eval_n`` at the last eval
step, ``warmstart_eval_accuracy`` the same at step 0: ``evals.jsonl`` (``trainer.run_record.EvalRow``)
holds those per-prompt values, so the two metrics pair by prompt. Any other metric (``best_…``
selects a step, the rest are not per prompt) pairs by seed only. A source without ``evals`` (W&B) or
a run that logged none gives no outcomes: its comparisons pair by seed.
"""
from __future__ import annotations

import pandas as pd

PROMPT_METRICS = {"final_eval_accuracy": -1, "warmstart_eval_accuracy": 0}  # metric -> which eval row


def prompt_outcomes(source, df: pd.DataFrame, metrics) -> dict:
    """{metric: {records-frame index: (prompt ids, per-prompt accuracy)}} for the completed runs and
    the per-prompt metrics among ``metrics``; {} when the source has no per-prompt outcomes."""
    wanted = [m for m in metrics if m in PROMPT_METRICS]
    reader = getattr(source, "evals", None)
    if not wanted or reader is None:
        return {}
    out: dict = {m: {} for m in wanted}
    for label, run_dir, status in zip(df.index, df["run_dir"], df["status"]):
        if status != "completed":
            continue
        rows = reader(run_dir)
        if not rows:
            continue
        for m in wanted:
            row = rows[PROMPT_METRICS[m]]
            if PROMPT_METRICS[m] == 0 and row.step != 0:
                continue  # no warm-start row (a record cut short): no per-prompt values for it
            out[m][label] = (list(row.prompt_ids), [c / row.eval_n for c in row.correct])
    return out
