"""One trainable cell: a name, a stable id and its fully resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from variants import get_spec
from variants.spec import ModelSpec

from .schema import CellConfig


@dataclass(frozen=True)
class Cell:
    """One trainable cell of a grid."""

    cell_id: str
    grid: str
    name: str
    config: CellConfig
    labels: dict[str, str] = field(default_factory=dict)
    #: the model spec ``config`` resolves to, when the grid's expansion resolved it already
    spec: ModelSpec | None = field(default=None, compare=False, repr=False)

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def objective(self) -> str:
        o = self.config.objective
        return o if isinstance(o, str) else "+".join(o)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config as plain JSON-able data."""
        return self.config.model_dump(mode="json")

    def model_spec(self) -> ModelSpec:
        """The model spec of the cell's variant and overrides (resolved once)."""
        return self.spec if self.spec is not None else get_spec(self.config.variant, self.config.overrides)
