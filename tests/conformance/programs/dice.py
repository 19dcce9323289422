"""From the stubs page: a stub for a task of another repository, and its
body as a stand-in outside Coflux."""

import coflux as cf


@cf.stub("other_repo")
def random_int(max: int) -> int:
    return 4  # dummy value for testing


@cf.workflow()
def roll_die() -> str:
    # (the page writes random_int(6).result(); calling a task returns its value)
    return "You won" if random_int(6) == 6 else f"You lost with {random_int(6)}"


@cf.workflow()
def roll_many(times: int) -> list:
    return sorted({random_int(1) for _ in range(times)})
