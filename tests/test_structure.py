"""The code base's shape: no import cycle, no module over 400 lines, no variant named in the loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "sweeps", "analysis", "reproduce")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (function-level imports too).
    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``; a
    package whose ``__init__`` imports every submodule through ``pkgutil`` gets an edge to each."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
        if is_pkg and "pkgutil.iter_modules(__path__)" in path.read_text():
            graph[name] |= {m for m in modules if m.startswith(name + ".") and m.count(".") == name.count(".") + 1}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "trainer.registry" in graph["trainer.grpo"]  # from trainer import registry
    assert "trainer.rollout.hf" in graph["trainer.rollout"]  # a lazy import inside build_rollout
    assert "trainer.variants.nthr" in graph["trainer.variants"]  # the pkgutil discovery


def test_no_import_cycle():
    assert _cycles(import_graph()) == []


@pytest.mark.parametrize("folder", [*PACKAGES, "benchmarks", "tests", "slurm", "scripts"])
def test_no_module_is_over_400_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# ---------------------------------------------------------------- the loop never tests which variant is on
# The schema (trainer/config.py) may name variants in its help texts; nothing else of the loop may.
LOOP = ("trainer/grpo.py", "trainer/update_plan.py", "trainer/objectives.py", "trainer/run.py",
        "trainer/run_start.py", "trainer/token_loss.py", "trainer/validation.py", "trainer/checkpoint.py",
        "trainer/registry.py", "trainer/identity.py", "trainer/batching.py", "trainer/logprobs.py",
        "trainer/diagnostics.py", "trainer/sft.py", "trainer/tracking.py")


def _code_words(path: Path) -> set[str]:
    """Identifiers, attribute names and words of string constants, docstrings and comments left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", node.value))
    return words


def test_no_variant_is_named_in_the_training_loop():
    import trainer.variants  # noqa: F401  registers them
    from trainer import registry

    names = set(registry.LOSSES) | set(registry.FEATURES)
    assert {"nthr", "lopti", "dfpo", "reward_balanced", "sign_weight"} <= names  # the registry is populated
    for rel in LOOP:
        found = _code_words(ROOT / rel) & names
        assert not found, f"{rel} names variants {sorted(found)}: ask trainer.registry instead"


def test_the_word_check_catches_a_branch_on_a_variant(tmp_path):
    planted = tmp_path / "loop.py"
    planted.write_text('"""Mentions nthr in a docstring only."""\nif cfg.algorithm.nthr.enabled:\n    pass\n')
    assert "nthr" in _code_words(planted)
    planted.write_text('"""Mentions nthr in a docstring only."""\n# and nthr in a comment\nx = 1\n')
    assert "nthr" not in _code_words(planted)
