"""The ``coflux`` command: typer + rich, one module per command group, heavy imports inside commands."""
