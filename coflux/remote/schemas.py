"""Wire shapes shared by the client and the server (request bodies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueIn(_Strict):
    """A serialised value: inline ``data`` or a ``blob`` hash (see ``coflux.models.Value``)."""

    format: Literal["json", "pickle"]
    size: int = Field(ge=0)
    data: Any = None
    blob: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    references: list[str] = Field(default_factory=list, max_length=10000)
    type: str | None = Field(default=None, max_length=1000)
    repr: str | None = Field(default=None, max_length=10000)


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
    idempotency_key: str | None = Field(default=None, max_length=200)


class RerunRequest(_Strict):
    environment: str = Field(max_length=200)
    #: Execute every call again instead of reusing unchanged results of the run.
    force: bool = False
    #: The same key sent again gives the same execution instead of another.
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class CancelRequest(_Strict):
    step: int | None = Field(default=None, ge=1)


class BlobList(_Strict):
    keys: list[str] = Field(max_length=100000)
