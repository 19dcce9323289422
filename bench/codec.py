"""Per-message cost of the agent's protocols: decode + validate + encode, pydantic v2
against msgspec, on the messages of a chained call as they cross (JSON on stdout).

``python -m bench.codec``. The shapes are those of one task call: the
``schedule`` an execution sends (through its agent to the server), the
``execute`` the server sends back, the ``put_result``, the answer with the
result, and a ``log`` frame. Each codec decodes the JSON text into its typed
model (every field validated) and encodes the model again; ``json`` (decode
and encode only, no validation) is the floor.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import msgspec
import pydantic

from coflux.execution import framing
from coflux.remote import agent_protocol as protocol

VALUE = {"format": "json", "size": 2, "data": 41}
TARGET = {
    "name": "step",
    "type": "task",
    "parameters": [{"name": "n", "annotation": "int", "kind": "positional"}],
    "options": {"wait": False, "retries": {"limit": 0, "delay_min": 0.0, "delay_max": 0.0}},
    "code_hash": "5d41402abc4b2a76b9719d911017c592",
}
MESSAGES: dict[str, tuple[Any, Any]] = {
    "schedule": (
        protocol.Schedule,
        {
            "id": 17,
            "method": "schedule",
            "params": {
                "execution_id": "7K2QF9XH3M:1:1",
                "call_index": 3,
                "repository": "flows",
                "target": TARGET,
                "arguments": [VALUE],
                "wait": True,
            },
        },
    ),
    "put_result": (
        protocol.PutResult,
        {
            "id": 18,
            "method": "put_result",
            "params": {"execution_id": "7K2QF9XH3M:4:1", "value": VALUE},
        },
    ),
    "execute": (
        protocol.ExecuteParams,
        {
            "execution_id": "7K2QF9XH3M:4:1",
            "repository": "flows",
            "target": "step",
            "arguments": [VALUE],
            "timeout": 0.0,
        },
    ),
    "log_frame": (
        framing.Log,
        {
            "type": "log",
            "execution_id": "7K2QF9XH3M:4:1",
            "sequence": 1,
            "timestamp": 1764620000.25,
            "level": "stdout",
            "template": "processed {n} rows",
            "values": {"n": VALUE},
        },
    ),
}


class Target(pydantic.BaseModel):
    name: str
    type: str
    parameters: list[dict[str, Any]]
    options: dict[str, Any]
    code_hash: str


class ScheduleParams(pydantic.BaseModel):
    execution_id: str
    call_index: int
    repository: str
    target: dict[str, Any]
    arguments: list[dict[str, Any]]
    wait: bool = False


class Schedule(pydantic.BaseModel):
    id: int | str | None = None
    method: str
    params: ScheduleParams


class PutResultParams(pydantic.BaseModel):
    execution_id: str
    value: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class PutResult(pydantic.BaseModel):
    id: int | str | None = None
    method: str
    params: PutResultParams


class ExecuteParams(pydantic.BaseModel):
    execution_id: str
    repository: str
    target: str
    arguments: list[dict[str, Any]]
    timeout: float = 0.0


class Log(pydantic.BaseModel):
    type: str
    execution_id: str | None
    sequence: int
    timestamp: float
    level: str
    template: str | None
    values: dict[str, Any]


PYDANTIC = {
    "schedule": Schedule,
    "put_result": PutResult,
    "execute": ExecuteParams,
    "log_frame": Log,
}


def _per_message(fns: dict[str, Any], n: int) -> dict[str, float]:
    """Microseconds per call of each: the best of seven rounds of ``n``, the
    codecs taking turns within each round (the machine is shared and noisy)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(7):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / n)
    return {name: round(seconds * 1e6, 3) for name, seconds in best.items()}


def main() -> None:
    n = 2000 if "--quick" in sys.argv else 20000
    results: dict[str, Any] = {}
    for name, (model, message) in MESSAGES.items():
        text = json.dumps(message).encode()
        decoder = msgspec.json.Decoder(model)
        encoder = msgspec.json.Encoder()
        adapter = pydantic.TypeAdapter(PYDANTIC[name])
        assert msgspec.to_builtins(decoder.decode(text))  # each decodes what is sent
        assert adapter.validate_json(text)
        results[name] = {
            "bytes": len(text),
            **_per_message(
                {
                    "json_us": lambda text=text: json.dumps(json.loads(text)),
                    "msgspec_us": lambda text=text, d=decoder, e=encoder: e.encode(d.decode(text)),
                    "pydantic_us": lambda text=text, a=adapter: a.dump_json(a.validate_json(text)),
                },
                n,
            ),
        }
    total = {
        k: round(sum(r[k] for r in results.values()), 3)
        for k in next(iter(results.values()))
        if k.endswith("_us")
    }
    json.dump(
        {
            "benchmark": "codec",
            "versions": {"msgspec": msgspec.__version__, "pydantic": pydantic.VERSION},
            "messages": results,
            "one_of_each_us": total,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
