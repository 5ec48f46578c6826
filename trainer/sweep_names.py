"""A sweep named on a command line: a directory, a sweep id or a tune study name (``grpolab status``,
``collect``, ``table``, ``plot``, ``report`` all take the same three)."""

from __future__ import annotations

from pathlib import Path

from trainer.run_record import RUNS_DIR, SWEEP_PLAN_FILE, sweep_root, tune_root


def find_sweep(arg: str | Path, output_root: str | Path = "outputs") -> Path:
    """The sweep a command line names: the first of ``arg`` itself, ``<output_root>/sweeps/<arg>``
    (a sweep id) and ``<output_root>/tune/<arg>`` (a tune study) that holds a sweep (its plan
    ``sweep.json`` or a ``runs/`` dir), else ``arg`` when it is a directory (run records read as
    they are). ValueError naming the three places when none is there."""
    candidates = (Path(arg), sweep_root(output_root, str(arg)), tune_root(output_root, str(arg)))
    for c in candidates:
        if (c / SWEEP_PLAN_FILE).is_file() or (c / RUNS_DIR).is_dir():
            return c
    if candidates[0].is_dir():
        return candidates[0]
    raise ValueError(f"no sweep {str(arg)!r}: none of {', '.join(map(str, candidates))} holds one (a "
                     f"{SWEEP_PLAN_FILE} or a {RUNS_DIR}/ dir); give a sweep dir, or a sweep id or tune study "
                     f"name with --root <paths.output_root> (default outputs)")
