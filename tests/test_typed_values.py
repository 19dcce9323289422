"""Typed values: DataFrames and Series as Parquet, pydantic models as JSON with
their import path, numpy arrays as .npy, cloudpickle for the rest; exact round
trips, and previews the server, the CLI and the pages show without importing
pandas, numpy, pyarrow or user code."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pydantic
import pytest
from conftest import ServerProcess, new_workspace

from coflux.records.values import Value
from coflux.serialization import deserialize, display, serialize


class Blobs(dict):  # type: ignore[type-arg]
    def put(self, data: bytes) -> str:
        from coflux.cache import hash_bytes

        key = hash_bytes(data)
        self[key] = data
        return key


def round_trip(value: Any) -> tuple[Value, Any]:
    blobs = Blobs()
    stored = serialize(value, blobs.put)
    # Through the wire shape, as the server stores it.
    again = Value.from_dict(json.loads(json.dumps(stored.to_dict())))
    return stored, deserialize(again, blobs.__getitem__)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": pd.Categorical(["Lyon", "Oslo", "Lyon"], categories=["Oslo", "Lyon"]),
            "when": pd.to_datetime(["2024-01-05", "2024-02-06", "2024-03-07"]).tz_localize("UTC"),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "price": [1.5, 2.25, float("nan")],
        },
        index=pd.Index([30, 10, 20], name="order_id"),
    )[["price", "city", "when", "count"]]


def test_a_dataframe_round_trips_exactly_as_parquet() -> None:
    original = frame()
    stored, back = round_trip(original)
    assert stored.format == "parquet" and stored.type == "pandas.DataFrame"
    pd.testing.assert_frame_equal(back, original, check_exact=True)
    assert list(back.columns) == ["price", "city", "when", "count"]
    assert list(back.index) == [30, 10, 20] and back.index.name == "order_id"
    assert back["city"].cat.categories.tolist() == ["Oslo", "Lyon"]
    assert str(back["when"].dtype) == str(original["when"].dtype)


def test_a_series_and_a_multiindex_round_trip() -> None:
    series = pd.Series([1.0, 2.0], index=pd.date_range("2024-01-01", periods=2), name="load")
    stored, back = round_trip(series)
    assert stored.format == "parquet"
    pd.testing.assert_series_equal(back, series, check_exact=True)
    multi = pd.DataFrame(
        {"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    )
    _, back = round_trip(multi)
    pd.testing.assert_frame_equal(back, multi, check_exact=True)


def test_frames_parquet_cannot_keep_are_pickled_and_still_exact() -> None:
    numbered = pd.DataFrame({0: [1, 2], 1: ["x", "y"]})
    stored, back = round_trip(numbered)
    assert stored.format == "pickle"
    pd.testing.assert_frame_equal(back, numbered)
    mixed = pd.DataFrame({"a": [1, "two", 3.0]})
    stored, back = round_trip(mixed)
    assert stored.format == "pickle"
    pd.testing.assert_frame_equal(back, mixed)


class Address(pydantic.BaseModel):
    street: str
    city: str


class Customer(pydantic.BaseModel):
    name: str
    addresses: list[Address]
    tags: set[str]
    joined: dt.datetime
    manager: Customer | None = None


def test_a_pydantic_model_with_nested_models_round_trips() -> None:
    original = Customer(
        name="Ada",
        addresses=[Address(street="1 Main St", city="Lyon")],
        tags={"vip", "early"},
        joined=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        manager=Customer(name="Grace", addresses=[], tags=set(), joined=dt.datetime(2020, 1, 1)),
    )
    stored, back = round_trip(original)
    assert stored.format == "pydantic"
    assert stored.meta == {"model": "test_typed_values:Customer"}
    assert back == original and type(back) is Customer
    assert type(back.addresses[0]) is Address and back.tags == {"vip", "early"}
    assert stored.preview == {
        "kind": "model",
        "model": "Customer",
        "json": json.loads(original.model_dump_json()),
    }


def test_a_model_defined_in_a_function_is_pickled() -> None:
    class Local(pydantic.BaseModel):
        x: int

    stored = serialize(Local(x=1))
    assert stored.format == "pickle"


def test_numpy_arrays_round_trip_as_npy() -> None:
    for original in (
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.array([True, False]),
        np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
        np.zeros((2, 0, 3), dtype=np.float32),
    ):
        stored, back = round_trip(original)
        assert stored.format == "npy"
        assert back.dtype == original.dtype and back.shape == original.shape
        assert np.array_equal(back, original)
    stored, back = round_trip(np.array([{"a": 1}], dtype=object))
    assert stored.format == "pickle" and back[0] == {"a": 1}


def test_a_dataframe_preview() -> None:
    stored = serialize(frame())
    assert stored.preview == {
        "kind": "dataframe",
        "shape": [3, 4],
        "columns": [
            {"name": "price", "dtype": "float64"},
            {"name": "city", "dtype": "category"},
            {"name": "when", "dtype": str(frame()["when"].dtype)},
            {"name": "count", "dtype": "Int64"},
        ],
        "index": {"name": "order_id", "dtype": "int64"},
        "head": {
            "index": [30, 10, 20],
            "rows": [
                [1.5, "Lyon", "2024-01-05T00:00:00.000Z", 1],
                [2.25, "Oslo", "2024-02-06T00:00:00.000Z", None],
                [None, "Lyon", "2024-03-07T00:00:00.000Z", 3],
            ],
        },
    }
    shown = display(stored)
    assert shown["$type"] == "pandas.DataFrame" and shown["preview"] == stored.preview


SHOP = """
    import numpy as np
    import pandas as pd
    import pydantic

    import coflux as cf


    class Item(pydantic.BaseModel):
        sku: str
        quantity: int


    class Basket(pydantic.BaseModel):
        owner: str
        items: list[Item]


    @cf.task()
    def orders() -> pd.DataFrame:
        return pd.DataFrame(
            {"sku": pd.Categorical(["a", "b", "a"]), "qty": [1, 2, 3]},
            index=pd.Index(["o1", "o2", "o3"], name="order"),
        )


    @cf.task()
    def describe(frame: pd.DataFrame, basket: Basket, grid: np.ndarray) -> list:
        return [
            list(frame.columns),
            {k: str(v) for k, v in frame.dtypes.items()},
            list(frame.index),
            type(basket).__name__,
            type(basket.items[0]).__name__,
            [list(grid.shape), str(grid.dtype)],
        ]


    @cf.task()
    def basket() -> Basket:
        return Basket(owner="Ada", items=[Item(sku="a", quantity=2)])


    @cf.task()
    def grid() -> np.ndarray:
        return np.ones((2, 3), dtype=np.float32)


    @cf.workflow()
    def shop() -> list:
        frame, b, g = orders(), basket(), grid()
        return [describe(frame, b, g), frame.shape[0]]
"""

_HEAVY = re.compile(r"\|\s+(pandas|numpy|pyarrow|shop)(\.|\s*$)", re.MULTILINE)


def test_typed_values_end_to_end_and_viewers_never_import_them(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    # Python's own import log: every module the server imports, to its log.
    server.env = {"PYTHONPROFILEIMPORTTIME": "1"}
    server.start()
    try:
        ws = new_workspace(server, tmp_path / "ws")
        ws.write("shop.py", textwrap.dedent(SHOP))
        ws.start_agent("shop.py")
        run = ws.cli_json("submit", "shop.py", "shop", "--wait")
        assert run["state"] == "succeeded"
        assert run["result"] == [
            [
                ["sku", "qty"],
                {"sku": "category", "qty": "int64"},
                ["o1", "o2", "o3"],
                "Basket",
                "Item",
                [[2, 3], "float32"],
            ],
            3,
        ]
        results = {s["target"]: s["executions"][0]["result"] for s in run["steps"]}
        frame_shown = results["shop:orders"]
        assert frame_shown["$type"] == "pandas.DataFrame"
        assert frame_shown["preview"]["shape"] == [3, 2]
        assert frame_shown["preview"]["columns"] == [
            {"name": "sku", "dtype": "category"},
            {"name": "qty", "dtype": "int64"},
        ]
        assert frame_shown["preview"]["head"] == {
            "index": ["o1", "o2", "o3"],
            "rows": [["a", 1], ["b", 2], ["a", 3]],
        }
        assert results["shop:basket"]["preview"] == {
            "kind": "model",
            "model": "Basket",
            "json": {"owner": "Ada", "items": [{"sku": "a", "quantity": 2}]},
        }
        assert results["shop:grid"]["preview"] == {
            "kind": "array",
            "shape": [2, 3],
            "dtype": "float32",
            "first": [1.0] * 6,
        }
        # The CLI's text view and its own imports.
        text = ws.cli(
            "runs", "show", run["id"], env_extra={"PYTHONPROFILEIMPORTTIME": "1", "COLUMNS": "200"}
        )
        assert text.returncode == 0
        assert "<pandas.DataFrame> DataFrame 3 × 2: sku category, qty int64" in text.stdout
        # The CLI logs its imports (PYTHONPROFILEIMPORTTIME): it draws previews itself.
        assert re.search(r"\|\s+coflux\.records\.previews$", text.stderr, re.MULTILINE)
        assert _HEAVY.findall(text.stderr) == []
        # The API's JSON and the run page.
        api = httpx.get(f"{server.url}/api/projects/{ws.project}/runs/{run['id']}").json()
        stored = {s["target"]: s["executions"][0]["value"] for s in api["steps"]}
        assert stored["shop:orders"]["format"] == "parquet"
        assert stored["shop:orders"]["preview"] == frame_shown["preview"]
        number = next(s["id"] for s in run["steps"] if s["target"] == "shop:orders")
        page = httpx.get(
            f"{server.url}/projects/{ws.project}/runs/{run['id']}",
            params={"env": "production", "step": number.rpartition(":")[2]},
        )
        assert page.status_code == 200
        assert "DataFrame 3 × 2: sku category, qty int64" in page.text
        # The first rows, as a table (the index first).
        assert "<tr><td>o2</td><td>b</td><td>2</td></tr>" in page.text
        log = server.log_path.read_text()
        assert re.search(r"\|\s+coflux\.remote\.server\.web\.views$", log, re.MULTILINE)
        assert _HEAVY.findall(log) == []
    finally:
        ws.stop_agents()
        server.stop()


@pytest.mark.parametrize("value", [frame(), np.arange(3)])
def test_values_in_json_documents_are_previews_not_pickles(value: Any) -> None:
    shown = display(serialize(value))
    assert set(shown) == {"$type", "repr", "preview"}
