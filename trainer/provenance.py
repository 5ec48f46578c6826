"""What code produced a run: git commit and whether the tree was dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# DeepSpeed's JIT-compiled ops (PathsConfig.cache_dir's default, anchored at the checkout so every
# cwd, and every SLURM job of a sweep, shares one build)
TORCH_EXTENSIONS_DIR = REPO_ROOT / ".cache" / "grpolab" / "torch_extensions"


def code_version(root: Path = REPO_ROOT) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
