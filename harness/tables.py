"""A small table type, its renderings (terminal text, Markdown, LaTeX, CSV) and
the number formats shared by ``harness profile`` and ``harness report``.

Every file is written atomically (``harness.atomic``), so a reader never sees
half a table.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.atomic import atomic_write_text

MISSING = "—"


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: Any, digits: int = 2) -> str:
    """A cell as text: floats rounded, missing values as a dash."""
    if is_missing(v):
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def pct_diff(ours: Any, paper: Any) -> float | None:
    """Relative difference of ours to the paper's value, in percent."""
    if is_missing(ours) or is_missing(paper) or not paper:
        return None
    return 100.0 * (float(ours) - float(paper)) / float(paper)


def fmt_pct(v: Any) -> str:
    if is_missing(v):
        return MISSING
    return "+0.0%" if abs(v) < 0.05 else f"{v:+.1f}%"


@dataclass
class Table:
    """Rows of already formatted or raw cells under named columns.

    ``digits`` gives the decimals of float columns (by column name, default 2);
    ``notes`` are printed under the table.
    """

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    digits: dict[str, int] = field(default_factory=dict)

    def add(self, row: Sequence[Any]) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"table {self.title!r}: row has {len(row)} cells, "
                             f"columns are {len(self.columns)}: {self.columns}")
        self.rows.append(list(row))

    def cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            out.append([c if isinstance(c, str) else fmt(c, self.digits.get(col, 2))
                        for col, c in zip(self.columns, row)])
        return out

    def to_text(self) -> str:
        cells = self.cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [self.title, "  ".join(c.ljust(w) for c, w in zip(self.columns, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        lines += self.notes
        return "\n".join(lines)

    def to_markdown(self, heading: str = "###") -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"{heading} {self.title}", "",
                 "| " + " | ".join(esc(c) for c in self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in self.cells()]
        if self.notes:
            lines += [""] + [f"{n}  " if i < len(self.notes) - 1 else n
                             for i, n in enumerate(self.notes)]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def esc(s: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                         ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                         ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
                         (MISSING, "--")):
                s = s.replace(a, b)
            return s

        lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{esc(self.title)}}}",
                 r"\begin{tabular}{" + "l" * len(self.columns) + "}", r"\hline",
                 " & ".join(esc(c) for c in self.columns) + r" \\", r"\hline"]
        lines += [" & ".join(esc(v) for v in r) + r" \\" for r in self.cells()]
        lines += [r"\hline", r"\end{tabular}"]
        if self.notes:
            lines.append(r"\par\footnotesize " + esc(" ".join(self.notes)))
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for row in self.rows:
            w.writerow(["" if is_missing(c) else c for c in row])
        return buf.getvalue()

    def write(self, out_dir: str | os.PathLike, stem: str,
              formats: Sequence[str] = ("md", "tex", "csv")) -> dict[str, Path]:
        """Write the table as ``stem.md`` / ``stem.tex`` / ``stem.csv``; return the paths."""
        render = {"md": self.to_markdown, "tex": self.to_latex, "csv": self.to_csv}
        bad = [f for f in formats if f not in render]
        if bad:
            raise ValueError(f"unknown table format(s) {bad}; allowed: {', '.join(render)}")
        return {f: atomic_write_text(Path(out_dir) / f"{stem}.{f}", render[f]()) for f in formats}
