"""``python -m coflux.execution``: the agent starts its worker processes so."""

from .process import main

if __name__ == "__main__":
    main()
