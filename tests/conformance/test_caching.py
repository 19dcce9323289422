"""The caching page: cache=True, cache_params, a max age, namespaces and versions,
and a recursive fib executing each n once."""

from __future__ import annotations

from .conftest import Mode, executions

PROGRAMS = ["caching"]


def lines(path) -> list[str]:  # type: ignore[no-untyped-def]
    return path.read_text().splitlines()


def test_cache_params_and_reuse_across_runs(mode: Mode) -> None:
    journal = mode.root / "products.journal"
    run = mode.run("caching", "products", str(journal))
    assert run["result"] == [
        "product p1 from https://one.example",
        "product p1 from https://one.example",
        "product p2 from https://one.example",
    ]
    first, second, third = executions(run, "caching:fetch_product")
    assert [first["state"], second["state"], third["state"]] == ["succeeded", "cached", "succeeded"]
    assert second["reused_from"] == first["id"]
    # A later run reuses both results.
    again = mode.run("caching", "products", str(journal))
    assert [e["state"] for e in executions(again, "caching:fetch_product")] == ["cached"] * 3
    assert lines(journal) == ["fetched p1", "fetched p2"]


def test_a_max_age(mode: Mode) -> None:
    journal = mode.root / "aged.journal"
    run = mode.run("caching", "aged", str(journal))
    assert run["result"] == ["posts of 1"] * 3
    states = [e["state"] for e in executions(run, "caching:latest_posts")]
    assert states == ["succeeded", "cached", "succeeded"]
    assert lines(journal) == ["posts 1", "posts 1"]


def test_fib_executes_each_n_once(mode: Mode) -> None:
    journal = mode.root / "fib.journal"
    run = mode.run("caching", "fibonacci", 10, str(journal))
    assert run["result"] == 55
    assert sorted(lines(journal), key=lambda line: int(line.split()[1])) == [
        f"fib {n}" for n in range(11)
    ]


def test_namespaces_are_shared_and_versions_separate(mode: Mode) -> None:
    journal = mode.root / "namespaces.journal"
    run = mode.run("caching", "namespaces", str(journal))
    # task_b finds task_a's result in their shared namespace; v2 doesn't.
    assert run["result"] == ["a saw x", "a saw x", "v2 saw x"]
    assert lines(journal) == ["a x", "v2 x"]


def test_a_child_environment_inherits_its_base_cache_never_the_reverse(mode: Mode) -> None:
    """(The concepts page's environment inheritance, as the caching page relies on it.)"""
    journal = mode.root / "inherit.journal"
    base = mode.run("caching", "namespaces", str(journal))
    assert base["environment"] == "production"
    child = mode.in_environment("feature-inherit")
    run = child.run("caching", "namespaces", str(journal))
    assert run["environment"] == "feature-inherit"
    assert run["result"] == ["a saw x", "a saw x", "v2 saw x"]
    assert [e["state"] for s in run["steps"][1:] for e in s["executions"]] == ["cached"] * 3
    assert lines(journal) == ["a x", "v2 x"]
    # A result made in the child is not visible from its base (fib's key is over
    # all its arguments, so this journal's are new).
    child_only = mode.root / "child-only.journal"
    assert child.run("caching", "fibonacci", 3, str(child_only))["result"] == 2
    assert len(lines(child_only)) == 4  # fib 3, 2, 1, 0 (fib 1 again is a hit)
    assert mode.run("caching", "fibonacci", 3, str(child_only))["result"] == 2
    assert len(lines(child_only)) == 8  # executed again in the base
