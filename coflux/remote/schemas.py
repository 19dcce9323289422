"""Wire shapes shared by the client and the server (request bodies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from .storable import Int, Timestamp, problem

#: Keys and other free text that the server looks rows up by: no control
#: characters (PostgreSQL can't compare a NUL).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Body(_Strict):
    """A whole request body: refused (422, naming the field) if anything in it
    is a value the store can't hold (see ``storable``), checked once for all
    the models nested in it."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        found = problem(data)
        if found is not None:
            raise PydanticCustomError("unstorable", found)
        return data


class ValueIn(_Strict):
    """A serialised value: inline ``data`` or a ``blob`` hash (``coflux.records.values.Value``)."""

    #: "json", "pickle", or a typed serialiser's ("parquet", "pydantic", "npy", ...).
    format: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,39}$")
    size: Int = Field(ge=0)
    data: Any = None
    blob: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    references: list[str] = Field(default_factory=list, max_length=10000)
    type: str | None = Field(default=None, max_length=1000)
    repr: str | None = Field(default=None, max_length=10000)
    meta: dict[str, Any] | None = None
    preview: dict[str, Any] | None = None


class ProjectCreate(_Body):
    name: str = Field(max_length=100)


class EnvironmentCreate(_Body):
    name: str = Field(max_length=200)
    base: str | None = Field(default=None, max_length=200)


class EnvironmentUpdate(_Body):
    name: str = Field(max_length=200)
    base: str | None = Field(default=None, max_length=200)
    no_base: bool = False
    new_name: str | None = Field(default=None, max_length=200)


class EnvironmentArchive(_Body):
    name: str = Field(max_length=200)


class ProvenanceIn(_Strict):
    """The git commit the registered code came from, and whether the tree differed."""

    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
    dirty: bool | None = None

    def as_tuple(self) -> tuple[str | None, bool | None]:
        return self.commit, self.dirty


class ManifestCreate(_Body):
    environment: str = Field(max_length=200)
    repository: str = Field(max_length=200)
    targets: list[dict[str, Any]] = Field(max_length=10000)
    provenance: ProvenanceIn | None = None


class RunCreate(_Body):
    environment: str = Field(max_length=200)
    repository: str = Field(max_length=200)
    target: str = Field(max_length=200)
    arguments: list[ValueIn] = Field(default_factory=list, max_length=1000)
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=PRINTABLE)


class RerunRequest(_Body):
    environment: str = Field(max_length=200)
    #: Execute every call again instead of reusing unchanged results of the run.
    force: bool = False
    #: The same key sent again gives the same execution instead of another.
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=PRINTABLE
    )


class CancelRequest(_Body):
    step: Int | None = Field(default=None, ge=1)
    #: A queued cancellation's key and when it was asked: only what existed then is cancelled.
    idempotency_key: str | None = Field(default=None, max_length=100)
    before: Timestamp | None = None


class BlobList(_Body):
    keys: list[str] = Field(max_length=100000)


# --- a run as immutable facts, to copy between servers (``coflux sync``) ---


class ResultFacts(_Strict):
    state: str = Field(max_length=20)
    value: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reused_from: str | None = Field(default=None, max_length=100)
    created_at: Timestamp


class ExecutionFacts(_Strict):
    step: Int = Field(ge=1)
    attempt: Int = Field(ge=1)
    environment: str = Field(max_length=200)
    created_at: Timestamp
    execute_after: Timestamp | None = None
    arguments: list[dict[str, Any]] | None = None
    checkpoint: list[dict[str, Any]] | None = None
    assigned_at: Timestamp | None = None
    started_at: Timestamp | None = None
    incremental: bool = False
    result: ResultFacts | None = None


class StepFacts(_Strict):
    number: Int = Field(ge=1)
    parent: str | None = Field(default=None, max_length=100)
    call_index: Int | None = None
    repository: str = Field(max_length=200)
    target: str = Field(max_length=200)
    type: str = Field(max_length=20)
    arguments: list[dict[str, Any]]
    options: dict[str, Any]
    cache_key: str | None = Field(default=None, max_length=64)
    memo_key: str | None = Field(default=None, max_length=64)
    code_hash: str | None = Field(default=None, max_length=64)
    reuse_key: str | None = Field(default=None, max_length=64)
    created_at: Timestamp


class DependencyFacts(_Strict):
    execution: str = Field(max_length=100)
    dependency: str = Field(max_length=100)


class LogFacts(_Strict):
    execution: str = Field(max_length=100)
    sequence: Int
    timestamp: Timestamp
    level: str = Field(max_length=20)
    template: str | None = None
    values: dict[str, Any]


class AssetFacts(_Strict):
    """An asset an execution of the run persisted; its manifest is the blob ``ref`` names."""

    execution: str = Field(max_length=100)
    ref: str = Field(max_length=40)
    path: str = Field(max_length=4096)
    files: Int = Field(ge=0)
    size: Int = Field(ge=0)
    created_at: Timestamp


class RunFacts(_Strict):
    id: str = Field(max_length=20)
    environment: str = Field(max_length=200)
    created_at: Timestamp


class RunExport(_Body):
    """Everything recorded of a run: what ``GET .../export`` gives and ``POST .../import`` takes."""

    format: Int = 1
    run: RunFacts
    steps: list[StepFacts]
    executions: list[ExecutionFacts]
    dependencies: list[DependencyFacts] = []
    logs: list[LogFacts] = []
    assets: list[AssetFacts] = []


class AssetCreate(_Body):
    """An asset to record: its entries (checked by ``coflux.assets.parse``), the
    path it was persisted from, and the execution that persisted it."""

    model_config = ConfigDict(extra="forbid")
    execution: str | None = Field(default=None, max_length=200)
    path: str = Field(min_length=1, max_length=4096)
    entries: list[Any] = Field(max_length=1_000_000)
    #: "file": one file persisted as itself (a restore gives the file's path).
    kind: Literal["file"] | None = None
