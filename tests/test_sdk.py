"""The SDK on its own: targets outside Coflux, values, and what viewers may read."""

from __future__ import annotations

from pathlib import Path

import pytest

import coflux as cf
from coflux.errors import ContextError, InvalidInput
from coflux.records.references import parse_reference
from coflux.records.targets import check_arguments
from coflux.records.values import Value
from coflux.serialization import BLOB_THRESHOLD, deserialize, display, serialize


@cf.task()
def add(a: int, b: int = 2) -> int:
    return a + b


@cf.workflow()
def total(numbers: list[int]) -> int:
    """Add one to each number and sum them."""
    return sum(add(n, 1) for n in numbers)


def test_targets_run_as_plain_functions_outside_coflux() -> None:
    assert total([1, 2, 3]) == 9
    assert add.submit(5).result() == 7
    assert add.spec.type == "task" and total.spec.type == "workflow"
    assert total.spec.docstring == "Add one to each number and sum them."
    assert [(p.name, p.annotation, p.default) for p in add.spec.parameters] == [
        ("a", "int", None),
        ("b", "int", "2"),
    ]


def test_context_functions_outside_an_execution_say_so() -> None:
    with pytest.raises(ContextError, match="log_info can only be called inside a Coflux execution"):
        cf.log_info("hello")
    with pytest.raises(ContextError, match=r"Execution.result\(\) can only be called"):
        cf.Execution("0000000000:1:1").result()


def test_bad_decorations_fail_at_decoration_time() -> None:
    with pytest.raises(InvalidInput, match="wait names unknown parameter"):

        @cf.task(wait=["nope"])
        def f(x: int) -> int:
            return x

    with pytest.raises(InvalidInput, match="keyword-only"):

        @cf.task()
        def g(*, x: int) -> int:
            return x


def test_json_values_stay_inline_until_the_threshold() -> None:
    value = serialize({"a": [1, 2.5, None, True], "b": "text"})
    assert value == Value("json", 34, data={"a": [1, 2.5, None, True], "b": "text"})
    assert deserialize(value, lambda key: b"") == {"a": [1, 2.5, None, True], "b": "text"}
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        blobs["k" * 32] = data
        return "k" * 32

    assert serialize("x" * (BLOB_THRESHOLD - 2), put).blob is None  # 200 bytes with quotes
    spilled = serialize("x" * (BLOB_THRESHOLD - 1), put)
    assert (spilled.blob, spilled.size, spilled.data) == ("k" * 32, 201, None)
    assert deserialize(spilled, blobs.__getitem__) == "x" * 199


def test_non_json_values_are_pickled_with_type_and_repr() -> None:
    for original in [(1, 2), {1, 2}, {1: "int key"}, float("nan"), b"bytes"]:
        value = serialize(original)
        assert value.format == "pickle"
        restored = deserialize(value, lambda key: b"")
        assert restored == original or (restored != restored and original != original)
    assert display(serialize((1, 2))) == {"$type": "tuple", "repr": "(1, 2)"}


def test_executions_inside_values_are_explicit_references() -> None:
    execution = cf.Execution("7K2QF9XH3M:2:1")
    as_json = serialize({"first": execution, "n": 1})
    assert as_json.references == ("7K2QF9XH3M:2:1",)
    assert as_json.data == {"first": {"$ref": 0}, "n": 1}
    assert deserialize(as_json, lambda key: b"") == {"first": execution, "n": 1}
    as_pickle = serialize((execution, 3))
    assert as_pickle.format == "pickle" and as_pickle.references == ("7K2QF9XH3M:2:1",)
    assert deserialize(as_pickle, lambda key: b"") == (execution, 3)


def test_s24_unpicklable_values_name_what_and_where() -> None:
    import threading

    with pytest.raises(cf.SerializationError, match=r"return value\['conn'\] → _thread.lock"):
        serialize({"conn": threading.Lock()}, where="return value")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def test_display_never_unpickles(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    value = serialize(_Payload(str(sentinel)))
    shown = display(value)
    assert shown["$type"].endswith("_Payload")
    assert not sentinel.exists()
    deserialize(value, lambda key: b"")  # the positive control: unpickling does run it
    assert sentinel.exists()


def test_references_parse_and_refuse_garbage() -> None:
    assert parse_reference("7k2qf9xh3m") == "7K2QF9XH3M"
    assert str(parse_reference("7K2QF9XH3M:3")) == "7K2QF9XH3M:3"
    assert str(parse_reference("7K2QF9XH3M:3:2")) == "7K2QF9XH3M:3:2"
    for bad in ["", "abc", "7K2QF9XH3M:0", "7K2QF9XH3M:1:x", "../7K2QF9XH3M"]:
        with pytest.raises(InvalidInput):
            parse_reference(bad)


def test_argument_counts_are_checked_against_parameters() -> None:
    check_arguments("m:add", add.spec.parameters, 1)
    check_arguments("m:add", add.spec.parameters, 2)
    with pytest.raises(InvalidInput, match=r"m:add takes 1 to 2 arguments \(a, b\); 3 given"):
        check_arguments("m:add", add.spec.parameters, 3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a count of 0 or more, not -1"),
        ({"retries": (2, 5, 1)}, r"retries=\(n, min, max\) needs min <= max"),
        ({"cache": "soon"}, "cache must be a number of seconds or a timedelta, not 'soon'"),
        (
            {"cache": True, "cache_params": ["missing"]},
            r"cache_params names unknown parameter\(s\) missing",
        ),
        ({"cache_params": "a"}, "cache_params/namespace/version need cache=True"),
        ({"memo": ["b", "zz"]}, r"memo names unknown parameter\(s\) zz"),
        ({"delay": -2}, "delay must be a number of seconds or a timedelta, not -2"),
        ({"timeout": "1m"}, "timeout must be a number of seconds or a timedelta, not '1m'"),
    ],
)
def test_impossible_options_fail_at_decoration_time(options: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):

        @cf.task(**options)
        def f(a: int, b: int) -> int:
            return a + b


def test_options_round_trip_through_the_manifest() -> None:
    from datetime import timedelta

    from coflux.records.targets import TargetOptions

    @cf.task(
        cache=timedelta(minutes=10),
        cache_params="a",
        retries=(3, 1, 5),
        memo=["b"],
        delay=2,
        timeout=timedelta(seconds=90),
    )
    def f(a: int, b: int) -> int:
        return a + b

    options = f.spec.options
    assert options.timeout == 90.0
    assert options.cache is not None and options.cache.max_age == 600.0
    assert options.cache.params == ("a",)
    assert [options.retries.delay(k) for k in (1, 2, 3)] == [1.0, 3.0, 5.0]
    assert TargetOptions.from_dict(options.to_dict()) == options
