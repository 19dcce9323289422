"""From the logging page: templates with values, and captured stdout/stderr."""

import sys

import coflux as cf


@cf.task()
def bottles() -> int:
    return 99


@cf.workflow()
def sing() -> str:
    cf.log_info(
        "{count} bottles of {drink} on the wall",
        count=99,
        drink="beer",
        sunny=True,
        temperature=12.3,
    )
    cf.log_warning("running low")
    print("printed to stdout")
    print("printed to stderr", file=sys.stderr)
    execution = bottles.submit()
    cf.log_debug("counting with {execution}", execution=execution)
    return f"{execution.result()} bottles"
