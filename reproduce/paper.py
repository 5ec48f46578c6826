"""What a reproduction of one paper declares: its accuracy sweep, its probe, its claims.

A ``Paper`` is data plus three functions; ``reproduce.run`` does the rest the same way for every
paper (launch the sweep through the normal launchers, run the probe once, judge, write the report).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from reproduce.claims import Claim


@dataclass(frozen=True)
class Plan:
    """``sweeps``: (name, overrides) of each sweep (``grpolab sweep`` grammar), run as sweep id
    ``reproduce-<paper>[-quick]-<name>``; ``probe``: the overrides of the probe's subject config;
    ``probe_seeds``: one probe batch each; ``note``: what the preset chose, said in the report."""

    sweeps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    probe: tuple[str, ...] = ()
    probe_seeds: tuple[int, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    arxiv: str
    claims: tuple[Claim, ...]
    plan: Callable[[bool], Plan]  # quick -> Plan
    probe: Optional[Callable] = None  # (subject, plan, log) -> json-able dict of raw probe numbers
    judge: Callable = None  # (probe dict | None, {sweep name: source}, quick) -> list[Result]
    figures: Callable = None  # (probe dict | None, {sweep name: source}, out dir) -> list[(path, caption)]
    caveats: tuple[str, ...] = field(default_factory=tuple)

    def claim(self, cid: str) -> Claim:
        return next(c for c in self.claims if c.id == cid)


REGISTRY: dict[str, Paper] = {}


def register(paper: Paper) -> Paper:
    REGISTRY[paper.name] = paper
    return paper
