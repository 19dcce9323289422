"""The ``coflux`` command: typer + rich, one module per command group.

Heavy modules are imported inside commands, so ``coflux --help`` starts fast.
"""
