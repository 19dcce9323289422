"""``python -m coflux``: the same as the ``coflux`` command."""

from .cli.main import main

main()
