"""S18 with generated input: schemathesis walks the server's OpenAPI schema.

Against a real ``coflux server`` (uvicorn, with the body limits and the front
door in place), every operation gets 25 generated requests, valid ones and
deliberately invalid ones. Whatever arrives, the server answers 2xx or 4xx
(a 4xx with a JSON ``detail``), never 5xx, and within 5 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

#: Generated requests per operation (docs/reliability.md: 25 in CI).
EXAMPLES = 25
PROJECT = "fuzzed"


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("schemathesis") / "data").start()
    httpx.post(f"{server.url}/api/projects", json={"name": PROJECT}).raise_for_status()
    yield server
    server.stop()
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def _operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_s18_generated_requests_get_no_5xx_and_a_prompt_answer(
    fuzzed_server: ServerProcess, mode: Any
) -> None:
    """(Hypothesis driven directly: schemathesis' pytest plugin does not run on
    pytest 9.)"""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    checked = []
    operations = _operations(fuzzed_server)
    for operation in operations:
        # Most paths name a project: an existing one lets requests reach the
        # handlers, rather than stopping at "unknown project".
        fixed = {"project": PROJECT} if "{project}" in operation.path else None

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same requests in every run
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_well(case: Any) -> None:
            started = time.monotonic()
            response = case.call(base_url=fuzzed_server.url, timeout=10)
            took = time.monotonic() - started
            where = (case.method, case.formatted_path, response.status_code)
            assert response.status_code < 500, (*where, response.text[:500])
            assert took < 5, (*where, took)
            if response.status_code >= 400 and case.method != "HEAD":
                assert response.json()["detail"], (*where, response.text[:500])

        try:
            answers_well()
        except Unsatisfiable:
            # No input to make invalid (an operation without parameters or body).
            if mode != GenerationMode.NEGATIVE:
                raise
            continue
        checked.append(f"{operation.method.upper()} {operation.path}")
    if mode == GenerationMode.POSITIVE:
        assert len(checked) == len(operations) >= 28, checked
    else:
        assert len(checked) >= len(operations) // 2, checked


def test_s18_the_schema_covers_the_api(fuzzed_server: ServerProcess) -> None:
    """The walk above is only as wide as the schema: every API route is in it."""
    paths = httpx.get(f"{fuzzed_server.url}/openapi.json").json()["paths"]
    assert "/api/projects/{project}/runs" in paths
    assert "/api/projects/{project}/blobs/{key}" in paths
    assert len(paths) >= 20, sorted(paths)
    assert not any(Path(p).name == "login" for p in paths)  # pages stay out of it
