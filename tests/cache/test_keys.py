"""Cache and reuse keys stay the same across versions: a stored key must still match."""

from __future__ import annotations

import json

import pytest

from coflux.cache.keys import arguments_key, hash_bytes

CASES = [
    (
        ["cache", "repo:square", None, "hash-of-square"],
        [{"format": "json", "data": 3, "size": 1}],
        # Computed by the implementation of 2026-12-01 (b34ced2), which made a
        # new JSON encoder per key: results cached before keep being reused.
        "44fb51a713e0409eb220c5b321ac2bfe",
    ),
    (
        ["reuse", "repo:t", "h"],
        [
            {
                "format": "json",
                "data": {"b": [1, "é"], "a": None},
                "size": 9,
                "references": ["R:1:1"],
            },
            {"format": "pickle", "blob": "0" * 32, "size": 10, "meta": {"model": "M", "z": 1}},
        ],
        "76ae79397410e65a8c6b37125e539016",
    ),
]


@pytest.mark.parametrize(("prefix", "arguments", "key"), CASES)
def test_a_key_is_the_one_earlier_versions_stored(
    prefix: list[str | None], arguments: list[dict], key: str
) -> None:
    assert arguments_key(prefix, arguments) == key


@pytest.mark.parametrize(("prefix", "arguments", "key"), CASES)
def test_a_key_hashes_the_sorted_json_of_its_prefix_and_canonical_arguments(
    prefix: list[str | None], arguments: list[dict], key: str
) -> None:
    canonical = [
        [a["format"], a.get("blob") or a.get("data"), a.get("references", [])]
        + ([a["meta"]] if a.get("meta") else [])
        for a in arguments
    ]
    assert hash_bytes(json.dumps([prefix, canonical], sort_keys=True).encode()) == key
