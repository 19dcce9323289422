"""From the sensors page: a ticker that starts a workflow every interval and
checkpoints where it got to, so a restart keeps the rhythm."""

import json
import os
import time

import coflux as cf

JOURNAL = os.environ.get("CONFORMANCE_JOURNAL", "sensor.journal")


def note(event: dict) -> None:
    """(For the test: what the sensor did, in order.)"""
    with open(JOURNAL, "a") as f:
        f.write(json.dumps(event) + "\n")


@cf.workflow()
def my_workflow() -> str:
    return "ticked"


@cf.sensor()
def ticker(interval: int = 300, last_tick: float | None = None):
    note({"event": "start", "pid": os.getpid(), "last_tick": last_tick})
    next_tick = last_tick + interval if last_tick else time.time()
    while True:
        remaining = max(0, next_tick - time.time())
        if remaining:
            time.sleep(remaining)
        my_workflow.submit()
        cf.checkpoint(interval, next_tick)
        note({"event": "checkpoint", "next_tick": next_tick})
        next_tick += interval
