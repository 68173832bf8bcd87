"""Command modules of the ``harness`` CLI: each has ``add_arguments(parser)`` and ``run(args) -> int``."""
