"""What must never be written: values of secret-looking keys, secret-looking values, launcher.env.

Stdlib only: the trainer (``config.yaml``, ``meta.json``, W&B) and the sweeps (``sweep.json``, the
jobs' pickles) redact through the same functions before they write. A redacted value is
``<redacted>``; the key stays, so a record still says that something was set.

- A key is secret-looking when one of these is a whole word of it, in any case and at any depth:
  ``token``, ``key``, ``secret``, ``password``/``passwd``/``pass``, ``auth``/``authorization``,
  ``credential(s)``, ``cookie``, ``session``, ``private`` (``HF_TOKEN``, ``OPENAI_KEY``,
  ``DB_PASS``, ``authToken``). ``max_new_tokens``, ``tokenizer``, ``keep`` are not, nor the knobs
  that name a data field (``prompt_key``: ``DATA_FIELD_KNOBS``); no schema key is (a test checks).
- ``launcher.env`` values are always redacted: the launcher hands them to the job's environment
  (the sbatch script's exports, the local job's environment), which is where they belong.
- A value is secret-looking when it holds a known token shape (``SECRET_VALUE``: ``hf_…``,
  ``sk-…``, ``ghp_…``/``gho_…``, ``github_pat_…``, ``xoxb-…``/``xoxp-…``, ``AKIA…``, ``glpat-…``, a
  JWT ``eyJ….….…``, 40 hex digits as a W&B API key) or
  a URL's password (``postgresql://user:pw@host``). Only the matching part is replaced, and only
  in the sections that never change a result (``FREE_SECTIONS``): elsewhere a value defines the
  run and is recorded as given (a model path may well end in a 40-hex snapshot hash).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

REDACTED = "<redacted>"

# Whole words only: ``(^|non-letter) word (non-letter|$)``; camelCase humps count as word breaks.
SECRET_KEY = re.compile(
    r"(^|[^a-z])(api[_-]?key|access[_-]?key|private[_-]?key|key|secret|password|passwd|pass|token|credentials?|auth"
    r"|authorization|cookie|session|private)([^a-z]|$)",
    re.IGNORECASE,
)
# Schema knobs whose value names a field of the data (``task.jsonl``): not secrets, though ``key``
# is a whole word of them. A new knob that looks secret fails tests/test_tracking.py until it is here.
DATA_FIELD_KNOBS = ("prompt_key", "answer_key", "solution_key")
SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{16,}"
    r"|github_pat_[A-Za-z0-9_]{16,}|xox[bpas]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|glpat-[A-Za-z0-9_-]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])"
)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s@]+(@)")
_ENV = re.compile(r"(^|\.)launcher\.env(\.|$)")
# The sections that never change a result (trainer.config_launch): their strings are free text a
# secret can be pasted into. ``paths`` is left out: its values are directories.
FREE_SECTIONS = ("launcher", "tracker", "sweep", "tune")
# Mappings whose keys are config keys (an override per entry): each entry is judged by its own key.
_OVERRIDE_MAPS = ("sweep.params", "tune.space")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key (one component, or a dotted key: any component) looks secret."""
    parts = str(key).split(".")
    return any(p not in DATA_FIELD_KNOBS and SECRET_KEY.search(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", p))
               for p in parts)


def looks_secret(value: Any) -> bool:
    """Whether a string holds a known token shape or a URL password."""
    return isinstance(value, str) and bool(SECRET_VALUE.search(value) or _URL_PASSWORD.search(value))


def redact_text(text: str) -> str:
    """``text`` with every secret-looking part replaced (``token=hf_x…`` → ``token=<redacted>``)."""
    return _URL_PASSWORD.sub(rf"\1{REDACTED}\2", SECRET_VALUE.sub(REDACTED, text))


def redact_value(key: str, value: Any) -> Any:
    """The recordable form of config key ``key``'s ``value`` (a string of an override, or a tree)."""
    path = key.lstrip("+~").split("@", 1)[0]
    env_map = path.endswith("launcher.env") and isinstance(value, dict)  # its entries are judged one by one
    if any(is_secret_key(part) for part in path.split(".")) or (_ENV.search(path) and not env_map):
        return REDACTED
    return redact_config(value, path)


def redact_config(tree: Any, prefix: str = "") -> Any:
    """A copy of a config tree (``trainer.identity.to_dict`` output, or a part of it at ``prefix``)
    with secrets redacted as the module docstring says; the tree itself is left as it was."""
    if isinstance(tree, dict):
        if prefix in _OVERRIDE_MAPS:
            return {k: redact_value(str(k), v) for k, v in tree.items()}
        return {k: redact_value(f"{prefix}.{k}" if prefix else str(k), v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_config(v, prefix) for v in tree]
    if isinstance(tree, str) and prefix.split(".", 1)[0] in FREE_SECTIONS:
        return redact_text(tree)
    return tree


def redact_override(override: str) -> str:
    """``key=value`` (Hydra's grammar) with the value redacted as ``key``'s would be."""
    key, sep, value = str(override).partition("=")
    if not sep:
        return redact_text(str(override))
    redacted = redact_value(key, value)
    return f"{key}={redacted}"


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    return [redact_override(o) for o in overrides]
