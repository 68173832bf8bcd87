"""lhotse's own progress bars (its recipes' ``tqdm``), off when the harness's are.

``harness data prepare --quiet`` turns the harness's bars off; the lhotse
recipes it calls (``prepare_librispeech``, ``prepare_aishell``) draw their own
with the ``tqdm`` name each of their modules imported. :func:`lhotse_bars`
replaces that name in every loaded lhotse module for the duration.
"""
from __future__ import annotations

import contextlib
import functools
import sys
from typing import Iterator


@contextlib.contextmanager
def lhotse_bars(enabled: bool) -> Iterator[None]:
    """Inside, lhotse's progress bars are drawn only if ``enabled``."""
    if enabled:
        yield
        return
    import lhotse.recipes  # noqa: F401  (loads the recipe modules, so their tqdm can be replaced)
    from tqdm import tqdm as base

    replaced = {}
    for name, module in list(sys.modules.items()):
        bar = getattr(module, "tqdm", None) if name.startswith("lhotse") and module is not None else None
        if isinstance(bar, type) and issubclass(bar, base):
            replaced[module] = bar
            module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        for module, bar in replaced.items():
            module.tqdm = bar
