"""rliable.library's interval estimates on fixed inputs, as JSON on stdout, computed in a process of
their own: ``rliable.library`` imports ``arch``, which imports numba and llvmlite, and an llvmlite
object in ``sys.modules`` breaks vLLM's kernel-override scan (``vars(value).get``) for every later
test in the same process.

    python -m tests.rliable_reference   # {"intervals": {...}, "profile": {...}}

Its bootstrap classes pass ``random_state=`` to ``arch``'s constructors, an argument ``arch`` 8
removed (rliable 1.2.0 declares ``arch < 8``, whose releases do not import under pandas 3): on arch 8
the argument (always None here) is dropped before arch sees it. Exit 3 (with the reason on stderr)
when rliable or a working arch is missing.
"""
from __future__ import annotations

import inspect
import json
import sys

import numpy as np


def _library():
    try:
        import arch.bootstrap as arch_bs
        from rliable import library
    except Exception as exc:  # arch 7.x under pandas 3: TypeError at import
        print(f"rliable.library needs rliable and an arch that imports here: {exc}", file=sys.stderr)
        sys.exit(3)
    for cls in (arch_bs.IIDBootstrap, arch_bs.IndependentSamplesBootstrap):
        init = cls.__dict__.get("__init__")
        if init is not None and "random_state" not in inspect.signature(init).parameters:
            def dropped(self, *args, random_state=None, _init=init, **kwargs):
                assert random_state is None
                _init(self, *args, **kwargs)
            cls.__init__ = dropped
    return library


def inputs() -> dict:
    """The score matrices (rliable's [runs × tasks]) both sides use."""
    rng = np.random.default_rng(3)
    x, y = rng.random((6, 3)), rng.random((4, 3))
    return {"x": x, "y": y, "profile_x": np.random.default_rng(4).random((5, 3)), "taus": np.linspace(0, 1, 21)}


def main() -> int:
    library = _library()
    from rliable import metrics

    data = inputs()
    x, y = data["x"], data["y"]
    out: dict = {"intervals": {}}
    for name, fn in [("iqm", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean),
                     ("median", metrics.aggregate_median)]:
        np.random.seed(11)  # rliable draws from numpy's global generator
        point, ci = library.get_interval_estimates({"x": x}, lambda s, f=fn: np.array([f(s)]), reps=400)
        out["intervals"][name] = [float(point["x"][0]), *map(float, ci["x"][:, 0])]
    np.random.seed(11)
    point, ci = library.get_interval_estimates(
        {"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=300)
    out["intervals"]["poi"] = [float(point["xy"][0]), *map(float, ci["xy"][:, 0])]
    np.random.seed(5)
    profile, band = library.create_performance_profile({"x": data["profile_x"]}, data["taus"], reps=300)
    out["profile"] = np.vstack([profile["x"], band["x"]]).tolist()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
