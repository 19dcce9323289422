"""From the concurrency page: submitting, waiting, passing executions, cancelling."""

import time

import coflux as cf


@cf.task()
def load_user(user_id: int) -> dict:
    time.sleep(1.0)
    return {"user": user_id}


@cf.task()
def load_product(product_id: int) -> dict:
    time.sleep(1.0)
    return {"product": product_id}


@cf.task()
def combine(user: dict, product: dict) -> dict:
    return {**user, **product}


@cf.workflow()
def in_parallel(user_id: int, product_id: int) -> dict:
    """Both loads are submitted before either result is asked for."""
    user_execution = load_user.submit(user_id)
    product_execution = load_product.submit(product_id)
    return combine(user_execution.result(), product_execution.result())


@cf.workflow()
def called_or_submitted(a: int, b: int) -> list:
    """Calling a task is submitting it and waiting at once."""
    return [combine({"a": a}, {"b": b}), combine.submit({"a": a}, {"b": b}).result()]


@cf.task(wait=True)
def create_order_all(user_execution: cf.Execution, product_execution: cf.Execution) -> dict:
    return {**user_execution.result(), **product_execution.result()}


@cf.task(wait={"product_execution"})
def create_order_product(user_execution: cf.Execution, product_execution: cf.Execution) -> dict:
    return {**user_execution.result(), **product_execution.result()}


@cf.task()
def create_order(user_execution: cf.Execution, product_execution: cf.Execution) -> dict:
    return {**user_execution.result(), **product_execution.result()}


@cf.workflow()
def wired(user_id: int, product_id: int) -> cf.Execution:
    """Executions passed to a task and returned, without waiting here."""
    user_execution = load_user.submit(user_id)
    product_execution = load_product.submit(product_id)
    return create_order.submit(user_execution, product_execution)


@cf.workflow()
def waiting(user_id: int, product_id: int) -> list:
    user_execution = load_user.submit(user_id)
    product_execution = load_product.submit(product_id)
    return [
        create_order_all(user_execution, product_execution),
        create_order_product(load_user.submit(user_id + 1), load_product.submit(product_id + 1)),
    ]


@cf.workflow()
def slow_workflow(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@cf.workflow()
def cancels_another() -> str:
    execution = slow_workflow.submit(30)
    execution.cancel()
    return execution.id


@cf.task()
def starts_a_workflow(name: str) -> str:
    """A task calling a workflow: it runs as a run of its own."""
    return greet(name)


@cf.workflow()
def greet(name: str) -> str:
    return f"Hello, {name}"


@cf.workflow()
def spawning(name: str) -> str:
    return starts_a_workflow(name)
