"""One run over two SLURM nodes, a node lost mid-run, and a sweep spread over both.

The cluster is ``slurm/start.sh --nodes 2``: this host is node grpolab-n1 and a second slurmd runs in
a network namespace with its own address and hostname (grpolab-n2), joined by a veth pair whose two
ends are both named grpolab0 (``GLOO_SOCKET_IFNAME=grpolab0`` on every rank). The module starts it if
needed and stops it (namespace, link and /etc/hosts block included) if it started it. Skipped with
the reason where it cannot start: not root, no SLURM packages, no network namespaces, or the
single-node test cluster running (the two share munge's socket).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import fast_overrides
from trainer.run_record import read_jsonl

pytest.importorskip("deepspeed", reason="a cell over two nodes is a DeepSpeed ZeRO-2 run")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NODES = ["grpolab-n1", "grpolab-n2"]
KEYS = ("train/loss", "train/pg_loss", "train/grad_norm", "train/clip_frac_low", "train/clip_frac_high",
        "train/entropy")
STEPS = 120  # ~0.06 s each: long enough that a node can be lost mid-run
COMPARED = 20  # steps compared with the one-process run at 1e-5 (float drift grows with every step)
TWO_NODE_CELL = ["model.hidden_size=64", "model.intermediate_size=128", "model.num_layers=2", "sft.steps=150",
                 "train.eval_every=40", "rollout.max_new_tokens=24", "engine=deepspeed_zero2",
                 # every rank samples the whole batch: the one process's sample, so trajectories compare
                 "rollout.shard_over_ranks=false"]
OVER_TWO_NODES = ["launcher=slurm_local", "launcher.nodes=2", "launcher.tasks_per_node=1"]


def _env_of_cluster() -> dict:
    out = subprocess.run(["bash", "-c", f"GRPOLAB_SLURM_NODES=2 source {ROOT / 'slurm' / 'env.sh'}; "
                                        "echo $GRPOLAB_SLURM_DIR"], capture_output=True, text=True, check=True)
    d = Path(out.stdout.strip())
    return {**os.environ, "GRPOLAB_SLURM_NODES": "2", "GRPOLAB_SLURM_DIR": str(d),
            "SLURM_CONF": str(d / "etc" / "slurm.conf"), "GLOO_SOCKET_IFNAME": "grpolab0", "OMP_NUM_THREADS": "1"}


def _idle_nodes(env) -> int:
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.split()[-1] in ("idle", "mix", "alloc")) \
        if out.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster():
    env = _env_of_cluster()
    started = False
    if _idle_nodes(env) < 2:
        if os.geteuid() != 0:
            pytest.skip("the two-node test cluster needs root (network namespaces, SlurmUser=root)")
        missing = [b for b in ("slurmctld", "ip", "nsenter", "unshare") if not shutil.which(b)]
        if missing:
            pytest.skip(f"{', '.join(missing)} missing: run slurm/install.sh")
        probe = subprocess.run(["ip", "netns", "add", "grpolab-probe"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"network namespaces cannot be made here: {probe.stderr.strip()}")
        subprocess.run(["ip", "netns", "del", "grpolab-probe"], capture_output=True)
        t0 = time.perf_counter()
        out = subprocess.run(["bash", str(ROOT / "slurm" / "start.sh"), "--nodes", "2"], env=env,
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0 or _idle_nodes(env) < 2:
            pytest.skip(f"the two-node test cluster could not start: {(out.stderr or out.stdout)[-800:]}")
        print(f"[two nodes] cluster started in {time.perf_counter() - t0:.1f} s")
        started = True
    yield env
    if started:
        t0 = time.perf_counter()
        subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh"), "--nodes", "2"], env=env, capture_output=True,
                       timeout=120)
        print(f"[two nodes] cluster stopped in {time.perf_counter() - t0:.1f} s")


def grpolab(env, *args, timeout=900):
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"rc={out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _deterministic(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]


def _sweep(env, tmp: Path, sweep_id: str, *overrides: str) -> tuple[Path, str]:
    """A one-cell sweep over both nodes, submitted detached: (its run dir, its job id)."""
    grpolab(env, "sweep", *fast_overrides(tmp, steps=STEPS), *TWO_NODE_CELL, *OVER_TWO_NODES, *overrides,
            f"sweep.id={sweep_id}", "--detach")
    sweep = tmp / "out" / "sweeps" / sweep_id
    ((name, (job_id,)),) = json.loads((sweep / "jobs.json").read_text()).items()
    return sweep / "runs" / name, job_id


def _collect(env, run_dir: Path) -> dict:
    grpolab(env, "collect", str(run_dir.parents[1]), "--poll", "1", "--timeout", "600")
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory):
    run_dir, _ = _sweep(cluster, tmp_path_factory.mktemp("two_nodes"), "whole")
    return run_dir, _collect(cluster, run_dir), read_jsonl(run_dir / "metrics.jsonl")


def test_one_cell_over_two_nodes_follows_the_one_process_run_and_names_both_nodes(cluster, uninterrupted, tmp_path):
    run_dir, summary, rows = uninterrupted
    assert summary["status"] == "completed" and summary["nodes"] == NODES, summary
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    one_dir = tmp_path / "one"
    grpolab(cluster, "train", *fast_overrides(tmp_path, steps=STEPS), *TWO_NODE_CELL, "--run-dir", str(one_dir))
    one = read_jsonl(one_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [r["step"] for r in one] == list(range(STEPS + 1))
    assert any(r.get("train/grad_norm", 0) > 0 for r in one)
    for r1, r2 in zip(one[1:COMPARED + 1], rows[1:COMPARED + 1]):
        assert r1["train/reward"] == r2["train/reward"], r1["step"]  # the same samples: the same global batch
        for k in KEYS:
            assert abs(r1[k] - r2[k]) <= 1e-5 * max(1.0, abs(r1[k])), (r1["step"], k, r1[k], r2[k])
    assert "nodes" not in json.loads((one_dir / "summary.json").read_text())


def _steps_done(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(read_jsonl(path)) - 1 if path.exists() else 0


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _node_state(env, node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], env=env, capture_output=True, text=True,
                          timeout=15).stdout.strip()


def test_a_node_lost_mid_run_is_requeued_by_slurm_and_resumes_to_the_uninterrupted_metrics(cluster, uninterrupted,
                                                                                          tmp_path):
    """Every process of grpolab-n2 SIGKILLed during a step (its slurmd, slurmstepd and rank 1): rank 0's
    next collective fails at once and its record says why; SLURM marks the node down after
    SlurmdTimeout and requeues the job (JobRequeue=1, node failure), which waits for two nodes.
    Once the node's slurmd is back, the job runs again and resumes from the last periodic checkpoint."""
    run_dir, job_id = _sweep(cluster, tmp_path, "lost", "train.checkpoint_every=5")
    _wait(lambda: _steps_done(run_dir) >= 12, 300, "step 12 of the two-node run")
    pids = subprocess.run(["ip", "netns", "pids", "grpolab-n2"], capture_output=True, text=True).stdout.split()
    assert len(pids) >= 3, pids  # slurmd, slurmstepd, the rank-1 task (at least)
    subprocess.run(["kill", "-KILL", *pids], check=True)
    assert _steps_done(run_dir) < STEPS  # lost mid-run, not after the last step
    _wait(lambda: json.loads((run_dir / "summary.json").read_text())["status"] == "failed", 120,
          "rank 0 to record the lost peer")
    cause = json.loads((run_dir / "summary.json").read_text())["error"]["cause"]
    assert "Connection" in cause and "10." in cause, cause  # gloo names the peer's address
    _wait(lambda: _node_state(cluster, "grpolab-n2").startswith("down"), 120, "grpolab-n2 to be marked down")
    state = subprocess.run(["sacct", "-X", "-n", "-j", job_id, "-o", "State"], env=cluster, capture_output=True,
                           text=True).stdout.split()
    assert state and state[0] in ("PENDING", "REQUEUED", "NODE_FAIL"), state
    out = subprocess.run(["bash", str(ROOT / "slurm" / "start.sh"), "--nodes", "2"], env=cluster,
                         capture_output=True, text=True, timeout=300)  # the node's slurmd comes back
    assert out.returncode == 0, out.stderr
    summary = _collect(cluster, run_dir)
    assert summary["status"] == "completed" and summary["attempt"] == 2, summary
    resumed = summary["resumed_from_step"]
    assert resumed >= 10 and resumed % 5 == 0, summary  # the last periodic checkpoint before the loss
    assert summary["nodes"] == NODES
    assert _deterministic(read_jsonl(run_dir / "metrics.jsonl")) == _deterministic(uninterrupted[2])


GRID = ["algorithm.kl.coef=0,0.1", "algorithm.clip.high=0.2,0.28", "seed=0,1"]


def test_a_sweep_lands_on_both_nodes_and_its_table_equals_the_one_node_sweeps(cluster, tmp_path):
    slurm_tmp, local_tmp = tmp_path / "slurm", tmp_path / "local"
    grpolab(cluster, "sweep", *fast_overrides(slurm_tmp, steps=2), "launcher=slurm_local", "sweep.id=grid", *GRID,
            "--detach")
    sweep = slurm_tmp / "out" / "sweeps" / "grid"
    grpolab(cluster, "collect", str(sweep), "--poll", "1", "--timeout", "800")
    jobs = [ids[-1] for ids in json.loads((sweep / "jobs.json").read_text()).values()]
    assert len(jobs) == 8
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,NodeList", "-j", ",".join(sorted(set(
        j.split("_")[0] for j in jobs)))], env=cluster, capture_output=True, text=True).stdout
    placed = {line.split("|")[2] for line in out.splitlines() if line.split("|")[1] == "COMPLETED"}
    assert placed == set(NODES), out
    grpolab(cluster, "sweep", *fast_overrides(local_tmp, steps=2), "launcher=local", "sweep.id=grid", *GRID)
    slurm_table = (sweep / "table.md").read_text()
    assert slurm_table == (local_tmp / "out" / "sweeps" / "grid" / "table.md").read_text()
    assert slurm_table.count("\n| ") >= 4  # a header and one row per cell
