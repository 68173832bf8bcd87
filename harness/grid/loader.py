"""Read a grid file (YAML) into a validated :class:`Grid`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import GridError, from_validation_error
from harness.config import GridFile


@dataclass(frozen=True)
class Grid:
    """A validated grid file."""

    path: Path
    name: str
    spec: GridFile

    @property
    def store_path(self) -> Path:
        """The grid's ``store``; without one ``$HARNESS_STORE`` if set, else ``results.sqlite``
        in the grid's run_root (``runs/<grid name>/results.sqlite``): each grid its own store,
        so one grid's cells never show up in another's (the demo's) report."""
        return self.store_in(self.run_root)

    def store_in(self, run_root: Path) -> Path:
        """:attr:`store_path` when the run directories are in ``run_root`` (``--run-root``)."""
        import os

        if self.spec.store:
            return Path(self.spec.store)
        if os.environ.get("HARNESS_STORE"):
            return Path(os.environ["HARNESS_STORE"])
        return Path(run_root) / "results.sqlite"

    @property
    def run_root(self) -> Path:
        return Path(self.spec.run_root) if self.spec.run_root else Path("runs") / self.name


def load_grid(path: str | Path) -> Grid:
    """Parse and validate ``path``; problems are a :class:`GridError` (one line each)."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise GridError(file, "", "no such grid file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise GridError(file, "", f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                        f"{e.start}); a grid file is YAML text") from None
    except OSError as e:
        raise GridError(file, "", f"cannot read the grid file: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise GridError(file, "", f"not valid YAML: {where}{getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise GridError(file, "", "a grid file must be a mapping with keys: "
                        + ", ".join(GridFile.model_fields))
    try:
        spec = GridFile.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(file, err, GridFile) from None
    return Grid(path=path, name=spec.name or path.stem, spec=spec)
