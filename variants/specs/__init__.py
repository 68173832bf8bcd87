"""Built-in presets (paper Table 1 / Table 2) and ablations (Tables 5 and 6)."""
from . import zipformer, conformer  # noqa: F401  (registration side effects)
