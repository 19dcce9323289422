"""From the deferring page: delay=, and defer=True replacing a pending call."""

import datetime as dt

import coflux as cf


def note(journal: str, line: str) -> None:
    with open(journal, "a") as f:
        f.write(line + "\n")


@cf.task(delay=dt.timedelta(seconds=0.5))
def send_reminder(reminder_id: int) -> str:
    return f"reminder {reminder_id}"


@cf.workflow()
def remind(reminder_id: int) -> str:
    return send_reminder(reminder_id)


@cf.task(delay=1, defer=True, defer_params=["user_id", "document_id"])
def send_notification(user_id: int, document_id: int, update: str, journal: str) -> str:
    note(journal, f"sent {update}")
    return f"told {user_id} about {document_id}: {update}"


@cf.workflow()
def debounce(journal: str) -> list:
    first = send_notification.submit(1, 7, "first edit", journal)
    second = send_notification.submit(1, 7, "second edit", journal)
    third = send_notification.submit(1, 7, "third edit", journal)
    return [first.result(), second.result(), third.result()]
