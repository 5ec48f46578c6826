"""Final-answer extraction and comparison for math datasets (stdlib only).

Every function here is fed raw policy output, so each must be total (never raise, always
return) and cheap on any string: the GRPO reward runs on every rollout, and one slow or
crashing check stalls or kills a run. Hence the rules below:

* Only the last ``MAX_SCAN_CHARS`` characters of a completion are scanned: the final answer
  sits at the end, and this bounds the cost on a runaway 1 MB generation.
* Every regex is linear time: no nested or overlapping quantifiers; brace matching is a
  single left-to-right pass with a stack, not a regex.
* Only ASCII digits count. ``"٣".isdigit()`` is True and ``int("٣") == 3``, but no math
  dataset writes its gold answers that way, and accepting them would let look-alike
  characters score; a non-ASCII digit therefore never parses as a number.
* Numbers with more than ``MAX_DIGITS`` digits, or exponents beyond ``MAX_EXPONENT``, do not
  parse (``int()`` refuses > 4300 digits and ``Fraction("1e999999999")`` would hang); such
  strings are then compared as normalized text.
* ``nan``/``inf``/``\\infty`` never parse as numbers; they are compared as text like any
  other symbolic answer, so ``"inf"`` equals ``"inf"`` and ``"nan"`` equals ``"nan"``.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_SCAN_CHARS = 10_000
"""How much of the end of a completion ``extract_answer`` looks at."""
MAX_DIGITS = 1000
"""Longer numbers do not parse (they compare as text)."""
MAX_EXPONENT = 1000
"""``1e1001`` and beyond do not parse: ``Fraction`` would build a huge integer."""
REL_TOL = Fraction(1, 10**6)
"""Tolerance used only when a side is a non-terminating fraction (see ``math_equal``)."""

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE_RE = re.compile(r"\\boxed ([^\s$]+)")  # ``\boxed 5`` as written in some MATH solutions
_MARKER_RE = re.compile(r"answer(?:\s*is\b|\s*:)|####", re.IGNORECASE)
_NUMBER_RE = re.compile(
    r"(?:(?<![0-9A-Za-z)}\]])-)?"  # a minus sign, unless it is a binary minus ("10-5")
    r"(?:[0-9]{1,3}(?:,[0-9]{3}(?![0-9]))+|[0-9]+)"  # 1,000 or 1000
    r"(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?(?:/[0-9]+)?"
)
_TEXT_CMD = r"\\(?:text(?:normal|bf|rm|it)?|mbox|math(?:rm|bf))\s*"
_UNIT_RE = re.compile(_TEXT_CMD + r"\{[^{}]*\}\s*$")
_TEXT_RE = re.compile(_TEXT_CMD + r"\{([^{}]*)\}")
_DROP_RE = re.compile(
    r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\displaystyle|\\[!,;: ()\[\]]|\\?\$|\^\{?\\circ\}?"
)
_VAR_PREFIX_RE = re.compile(r"^[A-Za-z]=(?=[^=]*$)")
_THOUSANDS_RE = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
_SLASH_RE = re.compile(rf"({_NUM})/({_NUM})")
_FRAC_RE = re.compile(r"([-+]?)\\frac(?:\{([^{}]*)\}|([0-9]))(?:\{([^{}]*)\}|([0-9]))")
_TIMES_TEN_RE = re.compile(rf"({_NUM})(?:\\times|\\cdot)10\^(?:\{{([-+]?[0-9]+)\}}|([0-9]))")
_EXP_RE = re.compile(r"[eE]([-+]?[0-9]+)$")
_DOLLAR_RE = re.compile(r"(?<!\\)\$\$?")
_UNIT_WORD_RE = re.compile(r"(\\?\$?-?[0-9][0-9,.]*)\s+[A-Za-z][A-Za-z ]*\.?")
_LIST_COMMA_RE = re.compile(r",\s")
_PLAIN_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _matching_braces(text: str) -> dict[int, int]:
    """Map each ``{`` index to its matching ``}`` index in one pass; ``\\{``/``\\}`` are literal."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character (also makes ``\\`` consume both backslashes)
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _boxes(text: str) -> list[tuple[str, int]]:
    """(content, end index) of every complete outermost box in ``text``, in order."""
    starts = [m.end() - 1 for m in _BOX_RE.finditer(text)]
    out: list[tuple[str, int]] = []
    if starts:
        pairs, covered_to = _matching_braces(text), -1
        for open_at in starts:
            if open_at in pairs and open_at > covered_to:
                out.append((text[open_at + 1 : pairs[open_at]].strip(), pairs[open_at]))
                covered_to = pairs[open_at]
    if not out:
        out = [(m.group(1), m.end()) for m in _BOX_SPACE_RE.finditer(text)]
    return out


def boxed_answers(text: str) -> list[str]:
    """Contents of every complete outermost ``\\boxed{...}``/``\\fbox{...}`` in the scanned tail, in order.

    A box inside another box is part of the outer one's content; a box whose braces never close
    (a truncated generation) is skipped. Without a braced box, ``\\boxed 5`` forms count.
    """
    return [content for content, _ in _boxes(text[-MAX_SCAN_CHARS:])]


def final_boxed(completion: str) -> str | None:
    """The last box's content when it is the completion's last word on the answer: None when there is no
    box, or when an "answer is"/"Answer:"/"####" statement follows it."""
    text = completion[-MAX_SCAN_CHARS:]
    boxes = _boxes(text)
    if not boxes or _MARKER_RE.search(text, boxes[-1][1]) is not None:
        return None
    return boxes[-1][0]


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}``/``\\fbox{...}`` (nested braces kept), else None.

    "Last" is by starting position, so ``\\boxed{\\boxed{3}}`` gives ``3``; a box whose
    braces never close (a truncated generation) is skipped in favour of an earlier one.
    """
    text = text[-MAX_SCAN_CHARS:]
    starts = [m.end() - 1 for m in _BOX_RE.finditer(text)]
    if starts:
        pairs = _matching_braces(text)
        for open_at in reversed(starts):
            if open_at in pairs:
                return text[open_at + 1 : pairs[open_at]].strip()
    spaced = None
    for m in _BOX_SPACE_RE.finditer(text):
        spaced = m.group(1)
    return spaced


def _answer_key(answer: str):
    """What makes two boxed answers the same: their value if numeric, else their normalized text."""
    value = parse_number(answer)
    return ("n", value) if value is not None else ("s", normalize(answer))


def hedged(completion: str) -> bool:
    """Several distinct boxed answers and no "answer is" after the last: a hedge, never correct.

    Boxed intermediate results followed by "The final answer is 10,455" are no hedge: the
    statement after the boxes is the answer.
    """
    try:
        text = completion[-MAX_SCAN_CHARS:]
        boxes = _boxes(text)
        if len({_answer_key(b) for b, _ in boxes}) < 2:
            return False
        return _MARKER_RE.search(text, boxes[-1][1]) is None
    except Exception:
        return False


def _math_span(text: str, pos: int) -> tuple[int, int] | None:
    """(start, end) of the ``$…$``/``$$…$$``/``\\(…\\)``/``\\[…\\]`` content around ``pos``, else None.

    Linear: one pass over the unescaped dollars and a ``rfind``/``find`` per bracket kind.
    """
    dollars = list(_DOLLAR_RE.finditer(text))
    before = [m for m in dollars if m.end() <= pos]
    if len(before) % 2 == 1:
        after = next((m.start() for m in dollars if m.start() >= pos), len(text))
        return before[-1].end(), after
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        start = text.rfind(opener, 0, pos)
        if start >= 0 and text.find(closer, start, pos) < 0:
            end = text.find(closer, pos)
            return start + 2, len(text) if end < 0 else end
    return None


def _after_marker(rest: str) -> str:
    """The answer stated after "answer is": up to the line's end or the first ". ", less a unit word."""
    segment = rest.split("\n", 1)[0].split(". ", 1)[0].strip()
    unit = _UNIT_WORD_RE.fullmatch(segment)
    return unit.group(1) if unit is not None else segment


def extract_answer(completion: str) -> str | None:
    """The final answer a completion commits to, or None.

    Priority: the last complete ``\\boxed{}``/``\\fbox{}``; else the text after the last
    "answer is" / "Answer:" / "####" (up to the end of that line or the first ". ", and a number
    followed only by words is that number: "42 apples." -> ``42``); else the last number
    (``-1,000.5``, ``1e3``, ``3/4``) in the scanned tail, unless it sits inside ``$…$``/``\\(…\\)``
    maths: then the whole maths span (``$\\dfrac{1}{3}$`` is ``\\dfrac{1}{3}``, not ``3``).
    """
    try:
        text = completion[-MAX_SCAN_CHARS:]
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        marker = None
        for marker in _MARKER_RE.finditer(text):
            pass
        if marker is not None:
            segment = _after_marker(text[marker.end() :].lstrip().lstrip(":").lstrip())
            if segment:
                return segment
        number = None
        for number in _NUMBER_RE.finditer(text):
            pass
        if number is None:
            return None
        span = _math_span(text, number.start())
        if span is not None and text[span[0] : span[1]].strip():
            return text[span[0] : span[1]].strip()
        return number.group(0)
    except Exception:
        return None


def plain_number(text: str) -> Fraction | None:
    """The value of an answer that is only an integer or decimal (after ``normalize``), else None.

    What the combined verifier's fast path decides alone: ``1{,}000``, ``\\$18``, ``x = 5``, ``-0.5``.
    """
    try:
        if _LIST_COMMA_RE.search(text):  # "32, 349" is a list, not thirty-two thousand
            return None
        s = normalize(text)
        return _decimal(s) if _PLAIN_RE.fullmatch(s) and len(s) <= MAX_DIGITS else None
    except Exception:
        return None


def normalize(text: str) -> str:
    """Canonical string form for comparing answers that are not plain numbers.

    Drops ``$``, ``\\left``/``\\right``, thin spaces (``\\!``, ``\\,``, ...), degree marks,
    all whitespace, one trailing period, a leading ``+`` and a single-variable prefix
    (``x = 5`` -> ``5``). A trailing ``\\text{...}`` after other content is a unit and is
    dropped (``5\\text{ cm}`` -> ``5``); any other ``\\text{X}`` is unwrapped to ``X``.
    ``\\dfrac``/``\\tfrac`` become ``\\frac``. Thousands separators are removed only when the
    whole answer is one number whose comma groups are all exactly three digits
    (``1,000`` and ``-1,234.5`` -> plain; ``1,2`` and ``(1,000,2)`` stay tuples, and the
    ambiguous ``1,234`` is read as one thousand two hundred thirty-four).
    """
    s = str(text).strip().replace("{,}", ",")
    unit = _UNIT_RE.search(s)
    if unit is not None and s[: unit.start()].strip():
        s = s[: unit.start()]
    s = _TEXT_RE.sub(r"\1", s)
    s = _DROP_RE.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\%", "%")
    s = "".join(s.split())
    if s.endswith("."):
        s = s[:-1]
    s = _VAR_PREFIX_RE.sub("", s)
    if s.startswith("+"):
        s = s[1:]
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


def _decimal(s: str | None) -> Fraction | None:
    """An ASCII integer/decimal/scientific literal as an exact Fraction, within the caps."""
    if s is None or not _NUM_RE.fullmatch(s):
        return None
    exp = _EXP_RE.search(s)
    if exp is not None:
        digits = exp.group(1).lstrip("+-").lstrip("0") or "0"
        if len(digits) > 6 or int(digits) > MAX_EXPONENT:
            return None
    return Fraction(s)


def _ratio(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    return None if a is None or b is None or b == 0 else a / b


def parse_number(text: str) -> Fraction | None:
    """The exact value of a numeric answer, or None if it is not (only) a number.

    Accepts integers, decimals, scientific notation (``1e3``, ``3\\times10^{5}``), ``3/4``,
    ``-3/4``, ``\\frac{3}{4}``, ``\\dfrac{-3}{4}``, ``-\\frac34``, and percentages with the
    ``%`` simply dropped (``50%`` == 50, not 0.5: datasets write the number the question
    asks for). Division by zero, NaN/inf, non-ASCII digits and numbers beyond the
    ``MAX_DIGITS``/``MAX_EXPONENT`` caps give None. Never raises.
    """
    try:
        if len(text) > 4 * MAX_DIGITS:
            return None
        s = normalize(text)
        if s.endswith("%"):
            s = s[:-1]
        if sum(c in "0123456789" for c in s) > MAX_DIGITS:
            return None
        if _NUM_RE.fullmatch(s):
            return _decimal(s)
        if m := _SLASH_RE.fullmatch(s):
            return _ratio(_decimal(m.group(1)), _decimal(m.group(2)))
        if m := _FRAC_RE.fullmatch(s):
            value = _ratio(_decimal(m.group(2) or m.group(3)), _decimal(m.group(4) or m.group(5)))
            return -value if value is not None and m.group(1) == "-" else value
        if m := _TIMES_TEN_RE.fullmatch(s):
            mantissa, exponent = _decimal(m.group(1)), int(m.group(2) or m.group(3))
            if mantissa is None or abs(exponent) > MAX_EXPONENT:
                return None
            return mantissa * Fraction(10) ** exponent
        return None
    except Exception:
        return None


def _terminates(x: Fraction) -> bool:
    """True if ``x`` has a finite decimal expansion (denominator of the form 2^a 5^b)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def math_equal(pred: str | None, gold: str) -> bool:
    """Whether a predicted final answer matches the gold answer. Never raises.

    If both sides parse as numbers, they are compared exactly (``0.5`` == ``\\frac{1}{2}``,
    ``1000001`` != ``1000000``). Only when one side is a non-terminating fraction, which no
    decimal can write exactly (``1/3``), a relative tolerance of 1e-6 applies, so
    ``0.333333`` == ``1/3`` but ``0.333`` != ``1/3``. Otherwise the ``normalize``d strings
    must be identical. ``None`` (nothing extracted) is never correct.
    """
    try:
        if pred is None or gold is None:
            return False
        pred, gold = str(pred), str(gold)
        a, b = parse_number(pred), parse_number(gold)
        if a is not None and b is not None:
            if a == b:
                return True
            if _terminates(a) and _terminates(b):
                return False
            return abs(a - b) <= REL_TOL * max(1, abs(b))
        return normalize(pred) == normalize(gold)
    except Exception:
        return False
