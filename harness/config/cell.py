"""One trainable cell: a name, a stable id and its fully resolved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from variants.spec import ModelSpec

from .schema import CellConfig


@dataclass(frozen=True)
class Cell:
    """One trainable cell of a grid."""

    cell_id: str
    grid: str
    name: str
    config: CellConfig
    #: the model spec ``config`` resolves to (``variants.get_spec`` of its variant and
    #: overrides), resolved once where the cell is made and passed down from there
    spec: ModelSpec = field(compare=False, repr=False)
    labels: dict[str, str] = field(default_factory=dict)

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
