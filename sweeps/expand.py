"""Expand sweep overrides (Hydra's grammar: ``k=a,b``, ``range()``, ``choice()``) into a grid.

Swept keys come from the command line and from the composed ``sweep.params``; the command line
wins for a key given in both: ``k=a,b`` replaces the key's axis, and a single value ``k=a`` pins it
(the key is then not swept; every cell runs ``k=a``). Seeds are a replication axis: ``seed=0,1`` or ``sweep.seeds``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sweeps.hydra_adapter import parse_overrides
from trainer.knobs import ConfigError


@dataclass(frozen=True)
class SweepGrid:
    """The cells a sweep command line expands to: overrides shared by all, and the swept axes."""

    base: tuple[str, ...]  # overrides shared by every cell
    axes: tuple[tuple[str, tuple[str, ...]], ...]  # (key, values as override strings)

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.axes]

    def cells(self) -> list[dict[str, str]]:
        """Every combination, first axis slowest (the order Hydra's BasicSweeper uses)."""
        return [dict(zip(self.keys, combo)) for combo in itertools.product(*(v for _, v in self.axes))]

    def overrides(self, cell: dict[str, str]) -> list[str]:
        return [*self.base, *(f"{k}={v}" for k, v in cell.items())]


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """(plain overrides, {key: sweep values}) from command-line overrides. A grid takes lists,
    ``range()`` and ``choice()``; an ``interval()`` has no values to enumerate (it is a search
    space: ``grpolab tune``) and a ``glob()`` picks options by pattern: both are refused."""
    plain, swept = [], {}
    for text, o in zip(overrides, parse_overrides(overrides)):
        if o.is_sweep_override():
            if o.is_interval_sweep():
                raise ConfigError(f"{text}: an interval is a search space, not a grid; sweep a list (key=a,b,c), "
                                  "range(start,stop[,step]) or choice(a,b), or search it with grpolab tune")
            if type(o.value()).__name__ == "Glob":  # Hydra has no is_glob()
                raise ConfigError(f"{text}: glob() picks config-group options by pattern, which a grid does not "
                                  "expand; list the options (key=a,b,c)")
            try:
                swept[o.get_key_element()] = tuple(o.sweep_string_iterator())
            except Exception as e:  # Hydra's grammar raises its own kinds: one line, not a traceback
                raise ConfigError(f"{text}: cannot expand this sweep ({e})") from None
        else:
            plain.append(text)
    return plain, swept


def build_sweep_grid(cli_overrides: list[str], sweep_params: dict[str, str], seeds: list[int]) -> SweepGrid:
    plain, swept = split_overrides(cli_overrides)
    plain_keys = {p.split("=", 1)[0].lstrip("+~") for p in plain}
    axes: dict[str, tuple[str, ...]] = {}
    for key, values in sweep_params.items():
        if key not in swept and key not in plain_keys:  # a single value on the command line pins the axis
            _, parsed = split_overrides([f"{key}={values}"])
            axes[key] = parsed.get(key, (str(values),))
    axes.update(swept)
    if ("seed" in swept or "seed" in plain_keys) and "sweep.seeds" in plain_keys:
        raise ConfigError("seed and sweep.seeds are both on the command line: give the seeds once "
                          "(seed=0,1,2 or sweep.seeds=[0,1,2])")
    if "seed" not in axes and "seed" not in plain_keys:
        axes["seed"] = tuple(str(s) for s in seeds)
    given = {o.get_key_element(): text for text, o in zip(cli_overrides, parse_overrides(cli_overrides))}
    for key, values in axes.items():
        if not values:
            source = given.get(key) or ("sweep.seeds=[]" if key == "seed" else f"sweep.params.{key}")
            raise ConfigError(f"{source}: an empty axis makes an empty grid; give {key} at least one value")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"{key}={','.join(values)}: {', '.join(repeated)} appears more than once, "
                              "so cells would repeat; give each value once")
    # seed last: cells of one configuration sit next to each other
    ordered = [(k, v) for k, v in axes.items() if k != "seed"]
    if "seed" in axes:
        ordered.append(("seed", axes["seed"]))
    return SweepGrid(tuple(plain), tuple(ordered))
