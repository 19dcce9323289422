"""The smallest Coflux workflow: `coflux run examples/hello.py greet Joe`."""

import coflux as cf


@cf.task()
def greeting(name: str) -> str:
    cf.log_info("greeting {name}", name=name)
    return f"Hello, {name}!"


@cf.workflow()
def greet(name: str = "world") -> str:
    """Greet someone, through a task."""
    return greeting(name)
