"""Run records survive a writer killed mid-write: whole files are atomic, a torn JSONL line is skipped."""

import json
import signal
import subprocess
import sys
import time

from trainer.run_record import RunRecord, atomic_write_json, read_jsonl

WRITER = r"""
import sys
from trainer.run_record import RunRecord, Summary
rec = RunRecord(sys.argv[1])
big = "x" * 200_000
i = 0
while True:
    rec.append_metrics({"step": i, "payload": big})
    rec.write_summary(Summary(steps_completed=i, timing={"payload": big}))
    i += 1
"""


def test_killed_writer_leaves_readable_records(tmp_path):
    for trial in range(5):
        run_dir = tmp_path / f"run{trial}"
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)])
        time.sleep(0.5 + 0.13 * trial)
        p.send_signal(signal.SIGKILL)
        p.wait()
        summary = json.loads((run_dir / "summary.json").read_text())  # never torn
        rows = read_jsonl(run_dir / "metrics.jsonl")
        assert [r["step"] for r in rows] == list(range(len(rows)))  # a prefix, in order
        # the summary is written after each append, so it trails the metrics by at most one step
        assert len(rows) - 2 <= summary["steps_completed"] <= len(rows) - 1


def test_non_finite_values_become_null(tmp_path):
    rec = RunRecord(tmp_path)
    rec.append_metrics({"step": 1, "loss": float("nan"), "kl": float("inf")})
    atomic_write_json(tmp_path / "s.json", {"a": float("-inf")})
    assert rec.metrics() == [{"step": 1, "loss": None, "kl": None}]
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": None}


def test_torn_last_line_is_skipped(tmp_path):
    rec = RunRecord(tmp_path)
    rec.append_metrics({"step": 1})
    with open(rec.metrics_path, "a") as f:
        f.write('{"step": 2, "los')
    assert rec.metrics() == [{"step": 1}]
