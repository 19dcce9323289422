"""A project's environments: names, bases (a tree), archiving, and ancestry.

Read once when the project loads and kept in memory; every change is staged
in the batch and acknowledged after it commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ....errors import Conflict, InvalidInput, NotFound
from ....records.names import validate_environment_name
from ..tables import T_ENV
from .batch import Batch
from .clock import Clock
from .ids import IdAllocator


class Environments:
    def __init__(self, project: str, batch: Batch, ids: IdAllocator, clock: Clock) -> None:
        self.project = project
        self.batch = batch
        self.ids = ids
        self.clock = clock
        self.ids_by_name: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self.bases: dict[int, int | None] = {}
        self.archived: set[int] = set()

    def load(self, c: Connection) -> None:
        for row in c.execute(select(T_ENV)):
            self._remember(row.id, row.name, row.base_id)
            if row.archived_at is not None:
                self.archived.add(row.id)

    def _remember(self, id: int, name: str, base_id: int | None) -> None:
        self.ids_by_name[name] = id
        self.names[id] = name
        self.bases[id] = base_id

    def id(self, name: str, archived: bool = False) -> int:
        """The id of a named environment; an archived one only when ``archived``."""
        validate_environment_name(name)
        id = self.ids_by_name.get(name)
        if id is None:
            raise NotFound(
                f"unknown environment {name!r} in project {self.project!r}; "
                f"create it with `coflux envs create {name}`"
            )
        if id in self.archived and not archived:
            raise Conflict(f"environment {name!r} is archived")
        return id

    def ancestry(self, environment_id: int) -> list[int]:
        """The environment, then its base, then the base's base..."""
        chain: list[int] = []
        current: int | None = environment_id
        while current is not None and current not in chain:
            chain.append(current)
            current = self.bases.get(current)
        return chain

    def check_visible(self, run_id: str, run_environment_id: int, environment_id: int) -> None:
        if run_environment_id not in self.ancestry(environment_id):
            raise InvalidInput(
                f"run {run_id} is in environment {self.names[run_environment_id]!r}, "
                f"which is not {self.names[environment_id]!r} or one of its bases"
            )

    async def create(self, name: str, base: str | None) -> dict[str, Any]:
        validate_environment_name(name)
        if name in self.ids_by_name:
            raise Conflict(f"environment {name!r} already exists in project {self.project!r}")
        base_id = self.id(base) if base else None
        id = self.ids.new("environments")
        self._remember(id, name, base_id)
        self.batch.insert(
            T_ENV, {"id": id, "name": name, "base_id": base_id, "created_at": self.clock.time()}
        )
        await self.batch.committed()
        return {"name": name, "base": base}

    async def update(
        self, name: str, base: str | None = None, no_base: bool = False, new_name: str | None = None
    ) -> dict[str, Any]:
        """Rebase (``base``), unbase (``no_base``) or rename an environment; cycles are refused."""
        id = self.id(name)
        if base is not None and no_base:
            raise InvalidInput("give either a base or no base, not both")
        changes: dict[str, Any] = {}
        if base is not None:
            base_id = self.id(base)
            if id in self.ancestry(base_id):
                raise InvalidInput(
                    f"basing {name!r} on {base!r} would make a cycle "
                    f"({base!r} is based on {name!r})"
                )
            changes["base_id"] = base_id
        elif no_base:
            changes["base_id"] = None
        if new_name is not None and new_name != name:
            validate_environment_name(new_name)
            if new_name in self.ids_by_name:
                raise Conflict(
                    f"environment {new_name!r} already exists in project {self.project!r}"
                )
            changes["name"] = new_name
        if changes:
            del self.ids_by_name[name]
            self._remember(id, changes.get("name", name), changes.get("base_id", self.bases[id]))
            self.batch.update(T_ENV, id, **changes)
            await self.batch.committed()
        return self.describe(id)

    async def archive(self, name: str) -> dict[str, Any]:
        """Hide an environment: no new runs, agents or registrations; its runs stay readable."""
        id = self.id(name)
        based = sorted(
            self.names[other]
            for other, base in self.bases.items()
            if base == id and other not in self.archived
        )
        if based:
            raise Conflict(
                f"environment {name!r} is the base of {', '.join(based)}; "
                "rebase or archive those first"
            )
        self.archived.add(id)
        self.batch.update(T_ENV, id, archived_at=self.clock.time())
        await self.batch.committed()
        return self.describe(id)

    def describe(self, id: int) -> dict[str, Any]:
        base = self.bases[id]
        return {"name": self.names[id], "base": self.names[base] if base is not None else None}

    def visible(self) -> list[dict[str, Any]]:
        """The environments not archived, by name."""
        return [
            self.describe(id)
            for _, id in sorted(self.ids_by_name.items())
            if id not in self.archived
        ]
