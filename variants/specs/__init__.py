"""Built-in presets (paper Table 1 / Table 2), ablations (Tables 5 and 6) and the
tiny variants the tests and benchmarks use."""
from . import zipformer, conformer, tiny  # noqa: F401  (registration side effects)
