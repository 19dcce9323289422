"""From the caching page: cache=True, a max age, cache_params, namespaces,
versions, and a recursive fib whose pending calls are linked."""

import datetime as dt
import time

import coflux as cf


def note(journal: str, line: str) -> None:
    with open(journal, "a") as f:
        f.write(line + "\n")


@cf.task(cache=True, cache_params=["product_id"])
def fetch_product(product_id: str, url: str, journal: str) -> str:
    note(journal, f"fetched {product_id}")
    return f"product {product_id} from {url}"


@cf.workflow()
def products(journal: str) -> list:
    return [
        fetch_product("p1", "https://one.example", journal),
        fetch_product("p1", "https://two.example", journal),  # url isn't in the key
        fetch_product("p2", "https://one.example", journal),
    ]


@cf.task(cache=dt.timedelta(seconds=1.5))
def latest_posts(user_id: int, journal: str) -> str:
    note(journal, f"posts {user_id}")
    return f"posts of {user_id}"


@cf.workflow()
def aged(journal: str) -> list:
    first = latest_posts(1, journal)
    again = latest_posts(1, journal)  # within the max age: reused
    time.sleep(2)
    later = latest_posts(1, journal)  # older than the max age: executed again
    return [first, again, later]


@cf.task(cache=True)
def fib(n: int, journal: str) -> int:
    note(journal, f"fib {n}")
    if n == 0 or n == 1:
        return n
    return fib(n - 1, journal) + fib(n - 2, journal)


@cf.workflow()
def fibonacci(n: int, journal: str) -> int:
    return fib(n, journal)


@cf.task(cache=True, cache_namespace="shared_namespace")
def task_a(a: str, journal: str) -> str:
    note(journal, f"a {a}")
    return f"a saw {a}"


@cf.task(cache=True, cache_namespace="shared_namespace")
def task_b(b: str, journal: str) -> str:
    note(journal, f"b {b}")
    return f"b saw {b}"


@cf.task(cache=True, cache_namespace="shared_namespace", cache_version="v2")
def task_v2(b: str, journal: str) -> str:
    note(journal, f"v2 {b}")
    return f"v2 saw {b}"


@cf.workflow()
def namespaces(journal: str) -> list:
    return [task_a("x", journal), task_b("x", journal), task_v2("x", journal)]
