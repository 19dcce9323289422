"""Manifests: the targets each repository registered in each environment, and their code hashes.

A registration adds a row only when the targets (or the commit they came
from) changed. Code hashes are read lazily and kept: a step's cache and
reuse keys include the hash of the target as the environment (or its
nearest ancestor) registered it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from ....errors import InvalidInput, NotFound
from ....records.names import validate_repository_name, validate_target_name
from ....records.targets import TargetSpec
from ..tables import T_MANIFEST
from .batch import Batch
from .clock import Clock
from .environments import Environments
from .ids import IdAllocator
from .provenance import UNKNOWN, Provenance


class Manifests:
    def __init__(
        self,
        engine: Engine,
        batch: Batch,
        ids: IdAllocator,
        clock: Clock,
        environments: Environments,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.ids = ids
        self.clock = clock
        self.environments = environments
        #: Code hashes of registered targets by (environment, repository), read lazily.
        self.code_hashes: dict[tuple[int, str], dict[str, str | None]] = {}

    async def register(
        self,
        environment: str,
        repository: str,
        targets: list[dict[str, Any]],
        provenance: Provenance = UNKNOWN,
    ) -> None:
        environment_id = self.environments.id(environment)
        validate_repository_name(repository)
        specs = []
        for data in targets:
            try:
                spec = TargetSpec.from_dict(data)
            except (KeyError, TypeError, ValueError, InvalidInput) as e:
                raise InvalidInput(f"invalid target in manifest for {repository}: {e}") from None
            validate_target_name(spec.name)
            if spec.type not in ("workflow", "task", "sensor"):
                raise InvalidInput(
                    f"invalid target type {spec.type!r} for {repository}:{spec.name}"
                )
            specs.append(spec.to_dict())
        if self.latest(environment_id, repository, provenance) == specs:
            return  # unchanged, from the same commit: registering again adds no row
        self.code_hashes[(environment_id, repository)] = {
            spec["name"]: spec.get("code_hash") for spec in specs
        }
        self.batch.insert(
            T_MANIFEST,
            {
                "id": self.ids.new("manifests"),
                "environment_id": environment_id,
                "repository": repository,
                "targets": specs,
                "created_at": self.clock.time(),
                "git_commit": provenance[0],
                "git_dirty": provenance[1],
            },
        )
        await self.batch.committed()

    def latest(
        self, environment_id: int, repository: str, provenance: Provenance | None = None
    ) -> list[dict[str, Any]] | None:
        """The latest manifest's targets (None if there is none, or if ``provenance``
        is given and the latest came from another commit)."""
        with self.engine.connect() as c:
            row = c.execute(
                select(T_MANIFEST.c.targets, T_MANIFEST.c.git_commit, T_MANIFEST.c.git_dirty)
                .where(T_MANIFEST.c.environment_id == environment_id)
                .where(T_MANIFEST.c.repository == repository)
                .order_by(T_MANIFEST.c.id.desc())
                .limit(1)
            ).first()
        if row is None or (provenance is not None and (row[1], row[2]) != provenance):
            return None
        return row[0]

    def code_hash(self, environment_id: int, repository: str, target: str) -> str | None:
        """The target's code hash as registered in the environment or its nearest ancestor."""
        for environment in self.environments.ancestry(environment_id):
            hashes = self.code_hashes.get((environment, repository))
            if hashes is None:
                targets = self.latest(environment, repository)
                hashes = {t["name"]: t.get("code_hash") for t in targets or ()}
                self.code_hashes[(environment, repository)] = hashes
            if target in hashes:
                return hashes[target]
        return None

    def find_target(self, environment_id: int, repository: str, target: str) -> TargetSpec:
        targets = self.latest(environment_id, repository)
        environment = self.environments.names[environment_id]
        if targets is None:
            raise NotFound(
                f"repository {repository!r} is not registered in environment {environment!r}; "
                f"register it with `coflux register {repository}` or start an agent for it"
            )
        for data in targets:
            if data["name"] == target:
                return TargetSpec.from_dict(data)
        names = ", ".join(sorted(t["name"] for t in targets if t["type"] == "workflow")) or "none"
        raise NotFound(
            f"unknown target {repository}:{target} in environment {environment!r} "
            f"(its workflows: {names})"
        )
