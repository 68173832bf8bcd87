"""The report's index page, ``index.md``: what the store holds, what is missing,
every table (embedded, with links to its Markdown/LaTeX/CSV files) and every
figure (PNG embedded, PDF linked) with its caption."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.atomic import atomic_write_text
from harness.tables import Table


@dataclass
class ReportPage:
    out_dir: Path
    store_line: str
    missing: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def add_table(self, table: Table, files: dict[str, Path], intro: str = "") -> None:
        links = " · ".join(f"[{ext}]({p.name})" for ext, p in files.items())
        body = table.to_markdown("###")
        self.sections.append((f"{intro}\n\n" if intro else "") + body + f"\nFiles: {links}\n")

    def add_figure(self, paths: list[Path], caption: str) -> None:
        png = next((p for p in paths if p.suffix == ".png"), None)
        links = " · ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths)
        img = f"![{caption}]({png.name})\n\n" if png else ""
        self.sections.append(f"{img}{caption} Files: {links}\n")

    def add_text(self, text: str) -> None:
        self.sections.append(text.rstrip() + "\n")

    def write(self) -> Path:
        parts = ["# Zipformer harness report", "",
                 f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `harness report` "
                 f"from {self.store_line}.", ""]
        if self.missing:
            parts += ["## What is missing", ""] + [f"- {m}" for m in self.missing] + [""]
        parts += self.sections
        return atomic_write_text(self.out_dir / "index.md", "\n".join(parts))
