"""A table layout (``analysis.table.TableLayout``) as a LaTeX ``tabular`` whose numbers align on
the decimal point: booktabs rules and siunitx ``S`` columns.

Each data column becomes up to six columns so every number sits in an ``S`` column of its own:
``mean`` ``± CI``, then, where the column has a comparison, ``Δ`` ``[lo`` ``, hi]``, and a text
column for the significance mark and a cell's own n; ``±``, the brackets and the comma are
``@{}`` separators between the columns, so they align too. The ``table-format`` of each ``S``
column is measured from the numbers it holds. A baseline cell leaves its Δ columns blank. The
options are set inside a group the file opens and closes, so ``\\input`` into a table float
needs only ``\\usepackage{booktabs,siunitx}`` (siunitx ≥ 3, TeX Live 2021+; Debian's
texlive-science); the file's first line says so.
"""
from __future__ import annotations

import math

from analysis.render import NA, fmt_key, tex_escape

PACKAGES = r"% needs \usepackage{booktabs} and \usepackage{siunitx} (v3, TeX Live 2021 or later)"
# bold means keep their weight inside S columns (siunitx v3 resets the series by default)
SISETUP = r"\sisetup{retain-explicit-plus, reset-text-series=false, text-series-to-math=true, propagate-math-font=true}"


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _int_digits(values) -> int:
    return max((len(str(int(abs(v)))) for v in values), default=1)


def _format_spec(values, digits: int, sign: str = "") -> str:
    """siunitx ``table-format`` of numbers shown with ``digits`` decimals: the widest integer part,
    a sign slot (``-`` where one is negative; ``+`` for signed differences)."""
    neg = "-" if not sign and any(v < 0 for v in values) else sign
    return f"{neg}{_int_digits(values)}.{digits}"


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _has_delta(cell) -> bool:
    return cell is not None and not cell.baseline and _finite(cell.delta)


class _Column:
    """One data column of the layout (a metric, maybe at one value of the ``--cols`` keys)."""

    def __init__(self, cells, digits):
        self.cells, self.digits = cells, digits
        self.delta = any(_has_delta(c) for c in cells)
        present = [c for c in cells if c is not None]
        self.means = [c.mean for c in present if _finite(c.mean)]
        self.cis = [c.ci for c in present if _finite(c.ci)]
        deltas = [c for c in present if _has_delta(c)]
        self.deltas = [c.delta for c in deltas]
        self.bounds = [b for c in deltas for b in (c.lo, c.hi) if _finite(b)]

    @property
    def tail(self) -> bool:
        """A text column after the numbers: the significance mark and a cell's own n."""
        return self.delta or any(c is not None and c.n_note for c in self.cells)

    @property
    def width(self) -> int:
        return 2 + 3 * self.delta + self.tail

    def spec(self) -> str:
        d = self.digits
        mean, ci = _format_spec(self.means, d), _format_spec(self.cis, d)
        out = rf"S[table-format={mean}] @{{\,$\pm$\,}} S[table-format={ci}]"
        if self.delta:
            signed = f"S[table-format={_format_spec(self.deltas, d, '+')}]"
            bound = f"S[table-format={_format_spec(self.bounds, d, '+')}]"
            out += rf" @{{\quad}} {signed} @{{\,[}} {bound} @{{,\,}} {bound} @{{]}}"
        return out + (r" >{\scriptsize}l" if self.tail else "")

    def header(self) -> str:
        """The sub-header cells: ``mean ± CI``, ``Δ [CI]``, and an empty one over the text column."""
        out = r"\multicolumn{2}{c}{mean $\pm$ CI}" + (r" & \multicolumn{3}{c}{$\Delta$ [CI]}" if self.delta else "")
        return out + (" & " if self.tail else "")

    def cell(self, cell) -> str:
        d = self.digits
        if cell is None:
            return " & ".join(["{}"] * (2 + 3 * self.delta) + ([""] if self.tail else []))
        mean = _fmt(cell.mean, d) if _finite(cell.mean) else "{---}"
        mean = (r"\bfseries " + mean) if cell.best and _finite(cell.mean) else mean
        parts = [mean, _fmt(cell.ci, d) if _finite(cell.ci) else "{---}"]
        mark = tex_escape(cell.mark).replace(r"\textdagger{}", r"\dagger") if _has_delta(cell) else ""
        if self.delta:
            if not _has_delta(cell):  # the baseline (its ']' separator spanned away too)
                parts.append(r"\multicolumn{3}{c}{}")
            elif _finite(cell.lo) and _finite(cell.hi):
                parts += [f"{cell.delta:+.{d}f}", f"{cell.lo:+.{d}f}", f"{cell.hi:+.{d}f}"]
            else:  # no interval: the difference alone, without brackets
                parts.append(f"\\multicolumn{{3}}{{l}}{{${cell.delta:+.{d}f}$}}")
        if self.tail:
            note = f"\\,($n{{=}}{cell.n_note}$)" if cell.n_note else ""
            parts.append((f"$^{{{mark}}}$" if mark else "") + note)
        return " & ".join(parts)


def latex_table(layout, digits: int = 3) -> str:
    """The ``tabular`` of ``layout`` (notes as ``%`` comments above it, so the file can be
    ``\\input`` into a table float with the paper's own caption)."""
    nk = len(layout.row_keys)
    cols = [_Column([row[1][j] for row in layout.body], digits) for j in range(len(layout.columns))]
    spec = "l" * nk + " " + " ".join(c.spec() for c in cols) + (" r" if layout.show_n else "")
    notes = layout.notes + ([layout.footer] if layout.footer else [])
    out = [PACKAGES] + [f"% {tex_escape(n)}" for n in notes]
    out += ["\\begingroup", SISETUP, f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    blank = [""] * nk
    if layout.col_keys:
        spans, rules, start, j = list(blank), [], nk + 1, 0
        for shown, n_cols in layout.metric_spans():
            width = sum(c.width for c in cols[j:j + n_cols])
            spans.append(f"\\multicolumn{{{width}}}{{c}}{{{tex_escape(shown)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
            start, j = start + width, j + n_cols
        out += [" & ".join(spans + ([""] if layout.show_n else [])) + " \\\\", " ".join(rules)]
        sub = layout.column_labels(None, digits)
    else:
        sub = [layout.name(m) for m, _ in layout.columns]
    heads = [f"\\multicolumn{{{c.width}}}{{c}}{{{tex_escape(s)}}}" for c, s in zip(cols, sub)]
    keys = [tex_escape(layout.name(k)) for k in layout.row_keys]
    n_head = ["$n$"] if layout.show_n else []
    if any(c.delta for c in cols):
        out.append(" & ".join(blank + heads + [""] * len(n_head)) + " \\\\")
        parts = [c.header() for c in cols]
        out.append(" & ".join(keys + parts + n_head) + " \\\\")
    else:
        out.append(" & ".join(keys + heads + n_head) + " \\\\")
    out.append("\\midrule")
    kd = layout.key_digits(digits)
    for label, cells, n in layout.body:
        row = [tex_escape(fmt_key(v, kd)) for v in label] + [c.cell(x) for c, x in zip(cols, cells)]
        out.append(" & ".join(row + ([str(n)] if layout.show_n else [])) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\endgroup"]
    return "\n".join(out).replace(NA, "---") + "\n"
