"""``grpolab reproduce <paper>``: the paper's sweep through the normal launchers, its probe once, the
verdicts, the report. Re-running resumes: the sweep skips its completed runs and the probe is
reused when its plan is unchanged (``probe.json`` records the plan it ran)."""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from reproduce.paper import REGISTRY, Paper
from trainer.run_record import atomic_write_json


def output_root(overrides) -> Path:
    """``paths.output_root`` as the overrides compose it (any spelling: ``++paths.output_root=``, …)."""
    return _root(tuple(overrides))


@functools.lru_cache(maxsize=8)
def _root(overrides: tuple) -> Path:
    from sweeps.compose import compose_dict, hydra_context

    with hydra_context():
        return Path(str(compose_dict(list(overrides)).paths.output_root))


def sweep_id(paper: Paper, quick: bool, name: str) -> str:
    return f"reproduce-{paper.name}" + ("-quick" if quick else "") + f"-{name}"


def out_dir(paper: Paper, quick: bool, overrides) -> Path:
    return output_root(overrides) / "reproduce" / (paper.name + ("-quick" if quick else ""))


def preflight(paper: Paper, plan, quick: bool, overrides) -> None:
    """Compose and validate every cell of every sweep and the probe's config before anything runs:
    a bad override is one ``ConfigError`` line, and nothing has started."""
    from sweeps.compose import compose
    from sweeps.plan import make_plan
    from sweeps.preflight import preflight as launch_checks

    for name, sweep in plan.sweeps:
        launch_checks(r.cfg for r in make_plan([*sweep, f"sweep.id={sweep_id(paper, quick, name)}", *overrides]).runs)
    if paper.probe is not None:
        compose([*plan.probe, *overrides])


def run_sweeps(paper: Paper, plan, quick: bool, overrides, log=print) -> tuple[dict, int]:
    """{name: source} of the plan's sweeps that wrote a plan (a source reads what completed), and the
    worst exit code; a failed cell does not stop the others or the report."""
    from analysis.records import DirSource
    from sweeps.cli import main as cli_main

    sources, worst = {}, 0
    for name, sweep in plan.sweeps:
        sid = sweep_id(paper, quick, name)
        log(f"reproduce {paper.name}: sweep {sid}")
        code = cli_main(["sweep", *sweep, f"sweep.id={sid}", *overrides])
        if code == 130:  # Ctrl-C inside the sweep: stop here too (a re-run resumes)
            raise KeyboardInterrupt
        worst = max(worst, code)
        sweep_dir = output_root(overrides) / "sweeps" / sid
        if (sweep_dir / "sweep.json").is_file():
            sources[name] = DirSource(sweep_dir)
    return sources, worst


def run_probe(paper: Paper, plan, overrides, out: Path, log=print):
    """The probe's raw numbers, from ``probe.json`` when it holds this plan's, else computed."""
    if paper.probe is None:
        return None
    from trainer.secrets import redact_overrides

    key = {"probe": list(plan.probe) + redact_overrides(overrides), "seeds": list(plan.probe_seeds)}
    path = out / "probe.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("plan") == key:
            log(f"reproduce {paper.name}: probe reused from {path}")
            return saved["result"] | {"seconds": saved.get("seconds", 0.0)}
    from reproduce.probe_setup import build_subject
    from sweeps.compose import compose

    cfg = compose([*plan.probe, *overrides])
    log(f"reproduce {paper.name}: probe on {len(plan.probe_seeds)} batches")
    t0 = time.time()
    result = paper.probe(build_subject(cfg, log), plan, log)
    seconds = time.time() - t0
    atomic_write_json(path, {"plan": key, "result": result, "seconds": seconds})
    return result | {"seconds": seconds}


def run_compute(sources: dict) -> dict:
    """What the sweeps' completed runs cost, from their own records: the sum of their wall times and
    their count (independent of whether this invocation ran them or found them done)."""
    from analysis.sources import runs_frame

    total, n = 0.0, 0
    for src in sources.values():
        df = runs_frame(src)
        done = df[df["status"] == "completed"]
        if "wall_time_s" in done:
            total += float(done["wall_time_s"].astype(float).sum())
            n += len(done)
    return {"runs_compute_s": total, "runs": n}


def model_text(plan, overrides) -> str:
    """The policy the runs trained, in the words of the report's scale caveat."""
    from sweeps.compose import compose
    from trainer.modeling import tiny_parameter_count

    first = [o.split(",", 1)[0] for o in plan.sweeps[0][1]] if plan.sweeps else list(plan.probe)  # one cell
    m = compose([*first, *overrides]).model
    if m.path:
        return f"the checkpoint {m.path}"
    return f"a {tiny_parameter_count(m) / 1e6:.1f}M-parameter model"


def reproduce(name: str, quick: bool, overrides, log=print) -> tuple[Path, int]:
    """Run one paper's reproduction; (report dir, exit code of its sweep)."""
    from reproduce.report import write_report

    paper = REGISTRY[name]
    plan = paper.plan(quick)
    out = out_dir(paper, quick, overrides)
    preflight(paper, plan, quick, overrides)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sources, code = run_sweeps(paper, plan, quick, overrides, log)
    t1 = time.time()
    probe = run_probe(paper, plan, overrides, out, log)
    t2 = time.time()
    results = paper.judge(probe, sources, quick)
    figures = paper.figures(probe, sources, out) if paper.figures else []
    timing = {"sweep_s": t1 - t0, "probe_s": t2 - t1, "total_s": time.time() - t0,
              "probe_compute_s": (probe or {}).get("seconds", 0.0), **run_compute(sources)}
    write_report(out, paper, plan, results, figures, timing, quick, overrides,
                 sweep_dirs=[str(s.root) for s in sources.values()], model=model_text(plan, overrides))
    log(f"reproduce {paper.name}: report -> {out / 'report.md'} ({timing['total_s']:.0f} s)")
    return out, code
