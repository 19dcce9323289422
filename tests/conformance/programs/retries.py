"""From the retries page: retries=n, a fixed delay, and a growing back-off."""

import coflux as cf


def attempt(journal: str) -> int:
    """The how-many-th call this is (the journal counts them across attempts)."""
    with open(journal, "a") as f:
        f.write("attempt\n")
    with open(journal) as f:
        return len(f.readlines())


@cf.task(retries=2)
def submit_reports(journal: str) -> str:
    n = attempt(journal)
    if n < 3:
        raise ConnectionError(f"attempt {n} failed")
    return f"submitted on attempt {n}"


@cf.task(retries=2)
def always_fails(journal: str) -> str:
    raise ValueError(f"attempt {attempt(journal)} failed")


@cf.task(retries=(2, 0.5))
def send_notification(journal: str) -> str:
    n = attempt(journal)
    if n < 3:
        raise ConnectionError(f"attempt {n} failed")
    return f"sent on attempt {n}"


@cf.task(retries=(3, 0.2, 0.6))
def backing_off(journal: str) -> str:
    n = attempt(journal)
    if n < 4:
        raise ConnectionError(f"attempt {n} failed")
    return f"done on attempt {n}"


@cf.workflow()
def reports(journal: str) -> str:
    return submit_reports(journal)


@cf.workflow()
def gives_up(journal: str) -> str:
    try:
        return always_fails(journal)
    except ValueError as e:
        return f"caller got: {e}"


@cf.workflow()
def delayed(journal: str) -> str:
    return send_notification(journal)


@cf.workflow()
def backoff(journal: str) -> str:
    return backing_off(journal)
