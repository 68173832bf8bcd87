"""The neutral config layer: what one cell of a grid is, shared by ``grid`` and ``train``.

``schema`` holds the pydantic models of a grid file and of one cell's config
(every section forbids unknown keys); ``cell`` holds :class:`Cell`, one expanded
cell with its stable id. ``train`` reads cells without importing ``grid``.
"""
from .cell import Cell  # noqa: F401
from .schema import (  # noqa: F401
    BaseSection,
    CellConfig,
    DataSection,
    DecodeSection,
    GridFile,
    OptimizerSection,
    Row,
    TrainSection,
)
