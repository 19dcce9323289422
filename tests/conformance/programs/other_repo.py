"""The repository a stub refers to (from the stubs page)."""

import random

import coflux as cf


@cf.task()
def random_int(max: int) -> int:
    return random.randint(1, max)
