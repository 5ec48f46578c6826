"""Render a table layout (``analysis.table.TableLayout``) as GitHub Markdown, LaTeX (booktabs and
siunitx, ``analysis.latex_table``) or HTML.

Every format shows the same thing: per cell ``mean ± CI`` with the best mean of each column in
bold and, for non-baseline cells, ``(Δ mark)``; the notes under the table say what the numbers
are. Only the markup differs, so the numbers are formatted once, here.
"""
from __future__ import annotations

import html
import math
import re

NA = "—"


def _num(x: float, digits: int) -> str:
    return NA if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_key(v, digits: int | None = None) -> str:
    """A swept value as shown: integral floats without ``.0`` (``0.0`` → ``0``); with ``digits``
    (a table's ``--digits``), other floats rounded: to that many decimals from 1 up, to that many
    significant digits below (a tuned ``0.00034664415306594665`` shows as ``0.000347``)."""
    if isinstance(v, float) and math.isfinite(v) and digits is not None and not v.is_integer():
        v = round(v, digits) if abs(v) >= 1 else float(f"{v:.{max(digits, 1)}g}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def distinct_digits(columns: list[list], digits: int) -> int | None:
    """The fewest digits (at least ``digits``) at which ``fmt_key`` keeps every column's distinct
    values distinct, so rounding never shows two cells under one label; None: show them unrounded."""
    distinct = [list({repr(v): v for v in col}.values()) for col in columns]  # values may be unhashable
    for d in range(digits, 18):
        if all(len({fmt_key(v, d) for v in col}) == len(col) for col in distinct):
            return d
    return None


def _parts(cell, digits):
    """(mean, ci, delta-with-sign, significance mark, n-annotation) as plain strings."""
    mean = _num(cell.mean, digits)
    ci = _num(cell.ci, digits)
    delta = "" if cell.baseline or cell.delta is None or not math.isfinite(cell.delta) else f"{cell.delta:+.{digits}f}"
    lo, hi = getattr(cell, "lo", math.nan), getattr(cell, "hi", math.nan)
    if delta and math.isfinite(lo) and math.isfinite(hi):
        delta += f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return mean, ci, delta, cell.mark, cell.n_note


# ---------------------------------------------------------------- Markdown
def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def _md_cell(cell, digits) -> str:
    if cell is None:
        return ""
    mean, ci, delta, mark, n_note = _parts(cell, digits)
    text = f"**{mean}**" if cell.best else mean
    text += f" ± {ci}"
    if delta:
        text += f" ({delta}{mark.replace('*', chr(92) + '*')})"
    return text + (f" (n={n_note})" if n_note else "")


def markdown(layout, digits: int = 3) -> str:
    header = [_md_escape(layout.name(k)) for k in layout.row_keys]
    header += [_md_escape(h) for h in layout.column_labels(" · ", digits)]
    align = ["---"] * len(layout.row_keys) + ["---:"] * len(layout.columns)
    if layout.show_n:
        header.append("n")
        align.append("---:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    kd = layout.key_digits(digits)
    for label, cells, n in layout.body:
        row = [_md_escape(fmt_key(v, kd)) for v in label] + [_md_cell(c, digits) for c in cells]
        if layout.show_n:
            row.append(str(n))
        lines.append("| " + " | ".join(row) + " |")
    if layout.notes:
        lines += ["", " ".join(layout.notes)]
    if layout.footer:
        lines += ["", layout.footer]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- LaTeX (booktabs)
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "—": "---", "±": r"$\pm$", "†": r"\textdagger{}", "·": r"$\cdot$", "Δ": r"$\Delta$", "≥": r"$\geq$",
        "≤": r"$\leq$", "<": r"$<$",
        ">": r"$>$", "π": r"$\pi$", "−": "-"}
# Greek letters (a label like β) as math; capitals that look Latin as their Latin letter
_GREEK_LOWER = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi o pi rho varsigma sigma "
                "tau upsilon phi chi psi omega").split()
_GREEK_UPPER = "A B Gamma Delta E Z H Theta I K Lambda M N Xi O Pi P - Sigma T Upsilon Phi X Psi Omega".split()
_TEX.update({chr(0x3B1 + i): (f"${chr(92)}{n}$" if len(n) > 1 else n) for i, n in enumerate(_GREEK_LOWER)})
_TEX.update({chr(0x391 + i): (f"${chr(92)}{n}$" if len(n) > 1 else n) for i, n in enumerate(_GREEK_UPPER) if n != "-"})
_TEX.update({"\n": " ", "\r": " ", "\t": " "})
_TEX_RE = re.compile("|".join(re.escape(k) for k in sorted(_TEX, key=len, reverse=True)) + "|[^\x00-\xff]")


def tex_escape(s) -> str:
    """Text safe for pdflatex with its default UTF-8 input and T1 fonts: the specials escaped, the
    Unicode symbols we emit and Greek letters as math; Latin-1 letters (é, ü) pass through; any
    other character pdflatex has no glyph for is written ``[U+XXXX]`` rather than breaking the build."""
    return _TEX_RE.sub(lambda m: _TEX.get(m.group(), f"[U+{ord(m.group()):04X}]"), str(s))


# ---------------------------------------------------------------- HTML
def _html_cell(cell, digits) -> str:
    if cell is None:
        return "<td></td>"
    mean, ci, delta, mark, n_note = _parts(cell, digits)
    mean = f"<b>{mean}</b>" if cell.best else mean
    text = f"{mean} ± {ci}"
    if delta:
        text += f' <span class="delta">({delta}{mark})</span>'
    if n_note:
        text += f" <small>(n={n_note})</small>"
    cls = ' class="baseline"' if cell.baseline else ""
    return f"<td{cls}>{text}</td>"


def html_table(layout, digits: int = 3) -> str:
    e = html.escape
    nk = len(layout.row_keys)
    out = ['<table class="ablation">', "<thead>"]
    if layout.col_keys:
        tr = "".join("<th></th>" for _ in range(nk))
        tr += "".join(f'<th colspan="{w}">{e(m)}</th>' for m, w in layout.metric_spans())
        out.append(f"<tr>{tr}{'<th></th>' if layout.show_n else ''}</tr>")
        sub = layout.column_labels(None, digits)
    else:
        sub = [layout.name(m) for m, _ in layout.columns]
    tr = "".join(f"<th>{e(layout.name(k))}</th>" for k in layout.row_keys) + "".join(f"<th>{e(s)}</th>" for s in sub)
    out += [f"<tr>{tr}{'<th>n</th>' if layout.show_n else ''}</tr>", "</thead>", "<tbody>"]
    kd = layout.key_digits(digits)
    for label, cells, n in layout.body:
        tr = "".join(f"<th>{e(fmt_key(v, kd))}</th>" for v in label) + "".join(_html_cell(c, digits) for c in cells)
        out.append(f"<tr>{tr}{f'<td>{n}</td>' if layout.show_n else ''}</tr>")
    out += ["</tbody>", "</table>"]
    notes = layout.notes + ([layout.footer] if layout.footer else [])
    out += [f'<p class="notes">{e(n)}</p>' for n in notes]
    return "\n".join(out) + "\n"
