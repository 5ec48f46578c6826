"""The pieces every config section is made of: a documented, bounded field, and the config error.

Stdlib only: the schema's sections (``trainer.config``, and each variant's own section in
``trainer/variants/``) use these, and so does code that must stay light (``grpolab status``).
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A config value out of range or inconsistent; the message names key, value and what is valid."""


def knob(default: Any, help: str, **bounds: Any) -> Any:
    """A config field with its documentation and bounds as metadata: ``ge``, ``gt``, ``le``, ``lt``
    for numbers, and ``valid``, a function of the value returning what would be valid when it is
    not (None when it is), for values no bound describes. Floats must be finite unless
    ``allow_inf=True`` (a knob whose doc gives infinity a meaning, e.g. NTHR's β = −inf)."""
    meta = {"help": help, **bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})

