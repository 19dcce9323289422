"""From the suspense page: cf.suspend(delay), and a suspense(timeout) block
around a result that isn't ready in time."""

import datetime as dt
import time

import coflux as cf


def calls(journal: str) -> int:
    with open(journal, "a") as f:
        f.write("call\n")
    with open(journal) as f:
        return len(f.readlines())


@cf.workflow()
def until_ready(journal: str, delay_kind: str) -> str:
    n = calls(journal)
    if n < 3:
        delays = {
            "seconds": 0.2,
            "timedelta": dt.timedelta(seconds=0.2),
            "datetime": dt.datetime.now() + dt.timedelta(seconds=0.2),
        }
        cf.suspend(delays[delay_kind])
    return f"ready on call {n}"


@cf.task()
def slow_user(user_id: int) -> dict:
    time.sleep(1.5)
    return {"user": user_id}


@cf.task()
def quick_product(product_id: int) -> dict:
    return {"product": product_id}


@cf.task()
def create_order(user_execution: cf.Execution, product_execution: cf.Execution) -> dict:
    with cf.suspense(timeout=0.2):
        user = user_execution.result()
    product = product_execution.result()
    return {**user, **product}


@cf.workflow()
def order(user_id: int, product_id: int) -> dict:
    return create_order(slow_user.submit(user_id), quick_product.submit(product_id))


@cf.task()
def patient(user_execution: cf.Execution) -> dict:
    with cf.suspense(None):  # no timeout: waits as outside any suspense block
        return user_execution.result()


@cf.workflow()
def no_timeout(user_id: int) -> dict:
    return patient(slow_user.submit(user_id))
