"""What the tests share, importable from any test as ``support.<module>`` (pytest puts
``tests/`` on ``sys.path``, ``pythonpath`` in pyproject.toml): ``gridtext`` (the base grid
text), ``faultkit`` (running the harness in a child process, read-only and tiny
filesystems), ``simulate`` (paired WER populations for the interval tests) and
``compiled_triton`` (code run against Triton's compiled kernels). The tiny synthetic
corpus, prepared once per test run, is the ``tiny_prepared`` / ``tiny_corpus`` fixture of
``tests/conftest.py``."""
