
import coflux as cf

@cf.task()
def inc(x: int) -> int:
    return x + 1

@cf.workflow()
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x

@cf.workflow()
def fanout(n: int) -> int:
    executions = [inc.submit(i) for i in range(n)]
    return sum(e.result() for e in executions)

@cf.task(cache=True)
def cached_inc(x: int) -> int:
    return x + 1

@cf.workflow()
def cached(n: int) -> int:
    executions = [cached_inc.submit(i) for i in range(n)]
    return sum(e.result() for e in executions)

@cf.task(cache=True)
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)

@cf.workflow()
def run_fib(n: int) -> int:
    return fib(n)
