"""The body of one math-verify worker process (``trainer.tasks.verify_pool`` starts them).

math-verify's own timeouts are ``signal.alarm``: they only work on a main thread and replace the
caller's SIGALRM handler, so they are switched off here and the pool's deadline rules instead (a
worker past it is killed). The address space is capped, so a runaway sympy expansion ends as a
``MemoryError`` (scored as an error) instead of taking the machine's memory. Imports only
math-verify and the stdlib: the forkserver preloads this module, and respawning a worker is a fork.
"""

from __future__ import annotations

import logging
import re
import resource

import math_verify
import math_verify.grader
import math_verify.parser

MEMORY_BYTES = 4 << 30
"""Address-space cap of a worker (``RLIMIT_AS``); a 1 MB digit string needs ~590 MB unbounded."""
MAX_PRED_CHARS = 10_000
"""Only the end of a completion is parsed, as on the exact path (``math_verify.MAX_SCAN_CHARS``)."""
MAX_CACHED_GOLDS = 200_000
_DECIMAL_COMMA_RE = re.compile(r"-?[0-9]+,(?:[0-9]{1,2}|[0-9]{4,})")

math_verify.parser.TIMEOUT_WARNING_SHOWN = True  # we disable its timeouts on purpose: the pool's deadline rules
logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)


def gold_text(answer: str) -> str:
    """A gold as math-verify reads it: bare golds (``\\frac12``, ``\\text{Monday}``), which ``parse`` turns into
    nothing, wrapped in a box; a gold already in maths delimiters or boxes is read as written."""
    delimited = any(mark in answer for mark in ("\\boxed", "$", "\\(", "\\["))
    return answer if delimited else "\\boxed{" + answer + "}"


def parse_gold(answer: str) -> list:
    """The gold's parses: its boxed reading, and for a decimal-comma number (``1,22``, never the
    thousands form ``1,220``) also its decimal reading, since a boxed ``1,22`` reads as the set {1, 22}."""
    parsed = list(math_verify.parse(gold_text(answer), parsing_timeout=None))
    if _DECIMAL_COMMA_RE.fullmatch(answer.strip()):
        parsed += math_verify.parse(answer.strip().replace(",", "."), parsing_timeout=None)
    return parsed


def serve(conn) -> None:
    """Answer ``(kind, gold, pred)`` requests until the pipe closes: ``("ok", value)`` or ``("error", why)``.

    ``kind`` is ``"gold"`` (value: how many expressions the gold parses to) or ``"verify"``
    (value: whether the completion's parsed answer equals the gold).
    """
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ValueError, OSError):  # a lower hard limit already set: keep it
        pass
    golds: dict[str, list] = {}
    conn.send(("ready", None))
    while True:
        try:
            kind, gold, pred = conn.recv()
        except (EOFError, OSError):
            return
        try:
            parsed = golds.get(gold)
            if parsed is None:
                if len(golds) >= MAX_CACHED_GOLDS:
                    golds.clear()
                parsed = golds[gold] = parse_gold(gold)
            if kind == "gold":
                out = ("ok", len(parsed))
            else:
                answer = math_verify.parse(pred[-MAX_PRED_CHARS:], parsing_timeout=None)
                ok = bool(parsed) and bool(answer) and math_verify.verify(parsed, answer, timeout_seconds=None)
                out = ("ok", bool(ok))
        except Exception as e:  # MemoryError and RecursionError too: this call's verdict, not the worker's end
            out = ("error", f"{type(e).__name__}: {str(e)[:160]}")
        conn.send(out)
