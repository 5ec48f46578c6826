"""Run a pickled job as submitit does and report who imported each watched module.

    python tests/import_probe.py JOB.pkl REPORT.json [--also MODULE]

A meta-path finder sees every import before the normal finders do; for a watched module (or any of
its submodules) it records the first frame outside importlib and outside the watched libraries
themselves: the module whose code asked for it. ``--also MODULE`` imports MODULE from this script
before the job runs (the positive control of ``tests/test_import_set.py``). The report holds the
importer of each watched module that was loaded and the sorted list of every top-level module.
"""

from __future__ import annotations

import json
import pickle
import sys

# Libraries whose own imports are not "an importer": a chain torch → sympy is charged to whoever
# imported torch's heavy part, not to torch.
PASS_THROUGH = ("importlib", "torch", "sympy", "triton", "scipy", "mpmath", "__future__")


def _top(name: str) -> str:
    return name.split(".")[0]


def _importing(frame) -> bool:
    while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
        if frame.f_code.co_name == "_find_and_load":
            return True
        frame = frame.f_back
    return False


class Watcher:
    """Meta-path finder that never finds anything: it only notes the importer of watched names."""

    def __init__(self, watched: tuple[str, ...]):
        self.watched = watched
        self.importer: dict[str, str] = {}

    def _key(self, fullname: str) -> str | None:
        for w in self.watched:
            if fullname == w or fullname.startswith(w + "."):
                return w
        return None

    def find_spec(self, fullname, path=None, target=None):
        key = self._key(fullname)
        if key is None or key in self.importer:
            return None
        frame = sys._getframe(1)
        if not _importing(frame):  # importlib.util.find_spec: an availability check, not an import
            return None
        while frame is not None:
            name = frame.f_globals.get("__name__", "")
            if not frame.f_code.co_filename.startswith("<frozen") and _top(name) not in PASS_THROUGH:
                self.importer[key] = name
                return None
            frame = frame.f_back
        self.importer[key] = "?"
        return None


def main(argv: list[str]) -> int:
    job_path, report_path = argv[0], argv[1]
    also = argv[argv.index("--also") + 1] if "--also" in argv else None
    watched = tuple(json.loads(sys.stdin.read()))
    watcher = Watcher(watched)
    sys.meta_path.insert(0, watcher)
    import submitit  # noqa: F401  (a job process has it loaded before it unpickles)

    if also:
        __import__(also)
    with open(job_path, "rb") as f:
        job = pickle.load(f)
    job()
    loaded = {k: v for k, v in watcher.importer.items() if k in sys.modules}  # a failed import is not one
    report = {"importer": loaded, "top_level": sorted({_top(m) for m in sys.modules})}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
