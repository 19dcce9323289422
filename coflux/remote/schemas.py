"""Wire shapes shared by the client and the server (request bodies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Keys and other free text that the server looks rows up by: no control
#: characters (PostgreSQL can't compare a NUL).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueIn(_Strict):
    """A serialised value: inline ``data`` or a ``blob`` hash (see ``coflux.models.Value``)."""

    #: "json", "pickle", or a typed serialiser's ("parquet", "pydantic", "npy", ...).
    format: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,39}$")
    size: int = Field(ge=0)
    data: Any = None
    blob: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    references: list[str] = Field(default_factory=list, max_length=10000)
    type: str | None = Field(default=None, max_length=1000)
    repr: str | None = Field(default=None, max_length=10000)
    meta: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None


class ProjectCreate(_Strict):
    name: str = Field(max_length=100)


class EnvironmentCreate(_Strict):
    name: str = Field(max_length=200)
    base: str | None = Field(default=None, max_length=200)


class EnvironmentUpdate(_Strict):
    name: str = Field(max_length=200)
    base: str | None = Field(default=None, max_length=200)
    no_base: bool = False
    new_name: str | None = Field(default=None, max_length=200)


class EnvironmentArchive(_Strict):
    name: str = Field(max_length=200)


class ManifestCreate(_Strict):
    environment: str = Field(max_length=200)
    repository: str = Field(max_length=200)
    targets: list[dict[str, Any]] = Field(max_length=10000)


class RunCreate(_Strict):
    environment: str = Field(max_length=200)
    repository: str = Field(max_length=200)
    target: str = Field(max_length=200)
    arguments: list[ValueIn] = Field(default_factory=list, max_length=1000)
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=PRINTABLE)


class RerunRequest(_Strict):
    environment: str = Field(max_length=200)
    #: Execute every call again instead of reusing unchanged results of the run.
    force: bool = False
    #: The same key sent again gives the same execution instead of another.
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=PRINTABLE
    )


class CancelRequest(_Strict):
    step: int | None = Field(default=None, ge=1)


class BlobList(_Strict):
    keys: list[str] = Field(max_length=100000)


# --- a run as immutable facts, to copy between servers (``coflux sync``) ---


class ResultFacts(_Strict):
    state: str = Field(max_length=20)
    value: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reused_from: str | None = Field(default=None, max_length=100)
    created_at: float


class ExecutionFacts(_Strict):
    step: int = Field(ge=1)
    attempt: int = Field(ge=1)
    environment: str = Field(max_length=200)
    created_at: float
    execute_after: float | None = None
    arguments: list[dict[str, Any]] | None = None
    checkpoint: list[dict[str, Any]] | None = None
    assigned_at: float | None = None
    started_at: float | None = None
    incremental: bool = False
    result: ResultFacts | None = None


class StepFacts(_Strict):
    number: int = Field(ge=1)
    parent: str | None = Field(default=None, max_length=100)
    call_index: int | None = None
    repository: str = Field(max_length=200)
    target: str = Field(max_length=200)
    type: str = Field(max_length=20)
    arguments: list[dict[str, Any]]
    options: dict[str, Any]
    cache_key: str | None = Field(default=None, max_length=64)
    memo_key: str | None = Field(default=None, max_length=64)
    code_hash: str | None = Field(default=None, max_length=64)
    reuse_key: str | None = Field(default=None, max_length=64)
    created_at: float


class DependencyFacts(_Strict):
    execution: str = Field(max_length=100)
    dependency: str = Field(max_length=100)


class LogFacts(_Strict):
    execution: str = Field(max_length=100)
    sequence: int
    timestamp: float
    level: str = Field(max_length=20)
    template: str | None = None
    values: dict[str, Any]


class AssetFacts(_Strict):
    """An asset an execution of the run persisted; its manifest is the blob ``ref`` names."""

    execution: str = Field(max_length=100)
    ref: str = Field(max_length=40)
    path: str = Field(max_length=4096)
    files: int = Field(ge=0)
    size: int = Field(ge=0)
    created_at: float


class RunFacts(_Strict):
    id: str = Field(max_length=20)
    environment: str = Field(max_length=200)
    created_at: float


class RunExport(_Strict):
    """Everything recorded of a run: what ``GET .../export`` gives and ``POST .../import`` takes."""

    format: int = 1
    run: RunFacts
    steps: list[StepFacts]
    executions: list[ExecutionFacts]
    dependencies: list[DependencyFacts] = []
    logs: list[LogFacts] = []
    assets: list[AssetFacts] = []


class AssetCreate(BaseModel):
    """An asset to record: its entries (checked by ``coflux.assets.parse``), the
    path it was persisted from, and the execution that persisted it."""

    model_config = ConfigDict(extra="forbid")
    execution: str | None = Field(default=None, max_length=200)
    path: str = Field(min_length=1, max_length=4096)
    entries: list[Any] = Field(max_length=1_000_000)
    #: "file": one file persisted as itself (a restore gives the file's path).
    kind: Literal["file"] | None = None
