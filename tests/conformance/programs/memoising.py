"""From the memoising page: memo=True shares one step within a run; memo=[names]."""

import coflux as cf


def note(journal: str, line: str) -> None:
    with open(journal, "a") as f:
        f.write(line + "\n")


@cf.task(memo=True)
def fetch_user(user_id: int, journal: str) -> dict:
    note(journal, f"user {user_id}")
    return {"id": user_id, "email": f"user{user_id}@example.com"}


@cf.task()
def send_email(user_id: int, journal: str) -> str:
    return f"mailed {fetch_user(user_id, journal)['email']}"


@cf.task()
def send_notification(user_id: int, journal: str) -> str:
    return f"notified {fetch_user(user_id, journal)['email']}"


@cf.workflow()
def notify(user_id: int, journal: str) -> list:
    return [send_email(user_id, journal), send_notification(user_id, journal)]


@cf.task(memo=["machine_id"])
def apply_configuration(machine_id: str, config: dict, journal: str) -> str:
    note(journal, f"configured {machine_id} with {config['size']}")
    return f"{machine_id} has size {config['size']}"


@cf.workflow()
def configure(journal: str) -> list:
    return [
        apply_configuration("m1", {"size": 1}, journal),
        apply_configuration("m1", {"size": 2}, journal),
        apply_configuration("m2", {"size": 3}, journal),
    ]
