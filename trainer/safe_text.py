"""Strings from a config that reach a generated script or a file name.

A newline in a value written into an sbatch script ends its line: bash runs the rest as a command,
and sbatch stops reading ``#SBATCH`` lines at it. So every string of a config but free text (a
prompt may hold newlines) is refused when it holds a control character: C0 (NUL, tab, newline,
CR, ESC, ...), DEL, C1 (NEL U+0085, ...) and the line and paragraph separators U+2028/U+2029 that
Python and YAML break lines at. Shell metacharacters (``$(...)``, backticks, ``;``, quotes) are
allowed: every value is shell-quoted where it is written (``sweeps.launch_slurm``).

Names that become one directory (``sweep.id``, ``tune.study_name``) are ``safe_name``s; paths must
fit the file system's limits. An error line never shows a secret (``trainer.secrets``). Stdlib
only: ``trainer.validation`` and the launchers use it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePath
from typing import Any, Iterator, Optional

from trainer.secrets import redact_value

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a shell can export
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")  # never '.', '..', a '/', a leading '-'
# Free text, never a path, a name or a script line.
FREE_TEXT = ("task.jsonl.prompt_template",)
# Paths grpolab creates or opens: every part must fit a file name (NAME_MAX), the whole must leave
# room below PATH_MAX (4096) for what grpolab puts under it (sweeps/<id>/runs/<run>/wandb/...).
PATH_KEYS = ("paths.output_root", "paths.cache_dir", "model.path", "task.jsonl.path", "task.jsonl.eval_path",
             "engine.ds_config")
NAME_MAX, PATH_ROOM = 255, 3500
SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """``repr(value)`` for an error line: control characters escaped, at most ``SHOWN_CHARS`` long."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(str(value))} chars)"


def key_text(name: Any) -> str:
    """A mapping key as part of a dotted key in an error line: as it is, unless it needs escaping."""
    if isinstance(name, str) and len(name) <= SHOWN_CHARS and name.isprintable():
        return name
    return shown(name)


def safe_name(value: Optional[str]) -> Optional[str]:
    """A ``valid=`` check (``trainer.knobs.knob``) for a name that becomes a directory and a job
    name: what would be valid when ``value`` is not, None when it is (or is unset)."""
    if value is None or (isinstance(value, str) and SAFE_NAME.fullmatch(value)):
        return None
    return "must be 1-100 of letters, digits, '.', '_', '-', not starting with '.' or '-' (it names a directory)"


def config_strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, text) of every string of a config: leaves, list items, mapping keys and values."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from config_strings(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{key_text(k)}"
            yield sub, str(k)
            yield from config_strings(v, sub)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from config_strings(v, f"{key}[{i}]")
    elif isinstance(value, str):
        yield key, value


def text_error(key: str, text: str) -> Optional[str]:
    """What is wrong with config string ``text`` at ``key`` (one line), or None."""
    if key not in FREE_TEXT and CONTROL_CHARS.search(text):
        return (f"{key}={shown(redact_value(key, text))}: control characters (newline, CR, tab, escape, NUL, "
                "U+2028, ...) are not allowed")
    if key in PATH_KEYS:
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > PATH_ROOM or any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in PurePath(text).parts):
            return (f"{key}={shown(redact_value(key, text))} ({size} bytes): each part of a path must be at most "
                    f"{NAME_MAX} bytes, and the whole at most {PATH_ROOM}")
    return None


def env_name_error(key: str, name: Any) -> Optional[str]:
    """``launcher.env``'s names are exported by a shell (SLURM) or put in a process environment."""
    if isinstance(name, str) and ENV_NAME.fullmatch(name):
        return None
    return f"{key}.{key_text(name)}: not an environment variable name (letters, digits, '_', not starting with a digit)"
