"""The subcommands of ``harness``, one module each (``harness/cli.py`` lists them).

Each module has ``add_arguments(parser)`` and ``run(args) -> int``; what they
share (the ``error: ...`` style, loading a grid, variant patterns, ``--set``)
is in ``common``.
"""
