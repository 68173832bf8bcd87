from .results_store import ResultsStore, default_store_path  # noqa: F401
