"""API tokens: made, listed and revoked by the server's administrator, checked on
every request when the server runs with ``--auth``.

A token is scoped to one project. Only its SHA-256 is stored (in
``<data-dir>/tokens.sqlite``, or the ``coflux`` schema of the server's
PostgreSQL database), so the data never holds a usable token; the plain token
is shown once, when it is made. ``coflux tokens`` works on that store directly
(whoever runs the server administers it), and a running server notices a
revocation within ``REFRESH`` seconds.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    update,
)

from ...errors import Conflict, InvalidInput, NotFound
from ...records.names import validate_project_name

#: Prefix of every token, so a leaked one is easy to recognise (and to scan for).
PREFIX = "cfx_"
#: How often a running server re-reads the token table (revocations take effect).
REFRESH = 0.25

_metadata = MetaData()
tokens_table = Table(
    "tokens",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("project", String, nullable=False),
    Column("hash", String, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: one project."""

    token_id: int
    project: str


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _metadata.create_all(self.engine)

    @classmethod
    def open(
        cls, data_dir: Path, database_url: str | None = None, create: bool = True
    ) -> TokenStore:
        """The server's tokens: in its PostgreSQL database when it has one (every
        server process sharing it sees the same tokens), else in its data directory."""
        if database_url:
            from .db import PostgresDatabase

            return cls(PostgresDatabase(database_url).engine_for("coflux"))
        path = data_dir / "tokens.sqlite"
        if not create and not path.exists():
            raise NotFound(
                f"no tokens in {data_dir}; is it the server's --data-dir? "
                "(`coflux tokens create` makes the first)"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(create_engine(f"sqlite:///{path}"))

    @classmethod
    def listing(cls, data_dir: Path, database_url: str | None = None) -> list[dict[str, Any]]:
        """Every token's public row: none in a server's data directory that has no
        tokens yet (a directory that doesn't exist is refused, as a mistyped path)."""
        if not database_url and data_dir.is_dir() and not (data_dir / "tokens.sqlite").exists():
            return []
        return cls.open(data_dir, database_url, create=False).list()

    def create(self, project: str, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """Make a token for ``project``; return it (the only time it is seen) and its row."""
        validate_project_name(project)
        token = PREFIX + secrets.token_urlsafe(32)
        name = name or f"{project}-{secrets.token_hex(3)}"
        if not name or len(name) > 100 or not name.isprintable():
            raise InvalidInput("a token's name must be 1 to 100 printable characters")
        with self.engine.begin() as c:
            taken = c.execute(select(tokens_table.c.id).where(tokens_table.c.name == name))
            if taken.first() is not None:
                raise Conflict(f"a token named {name!r} exists; choose another --name")
            row = {
                "name": name,
                "project": project,
                "hash": token_hash(token),
                "created_at": time.time(),
            }
            c.execute(insert(tokens_table).values(**row))
        return token, self._public(row)

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(tokens_table).order_by(tokens_table.c.id)).mappings()
            return [self._public(dict(r)) for r in rows]

    def revoke(self, name: str) -> dict[str, Any]:
        with self.engine.begin() as c:
            row = c.execute(select(tokens_table).where(tokens_table.c.name == name)).mappings()
            found = row.first()
            if found is None:
                raise NotFound(f"no token named {name!r}; `coflux tokens list` shows them")
            if found["revoked_at"] is None:
                c.execute(
                    update(tokens_table)
                    .where(tokens_table.c.id == found["id"])
                    .values(revoked_at=time.time())
                )
        return {**self._public(dict(found)), "revoked": True}

    def active(self) -> dict[str, Grant]:
        """Every usable token's hash, with what it grants."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(tokens_table.c.id, tokens_table.c.project, tokens_table.c.hash).where(
                    tokens_table.c.revoked_at.is_(None)
                )
            )
            return {r.hash: Grant(r.id, r.project) for r in rows}

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": row["name"],
            "project": row["project"],
            "created_at": row["created_at"],
            "revoked": row.get("revoked_at") is not None,
        }


def check(token: str, active: dict[str, Grant]) -> Grant | None:
    """The grant of ``token``, if it is a live one.

    Looked up by the token's SHA-256: a caller can't steer the hash, so the
    lookup's timing tells nothing about stored tokens (what a constant-time
    comparison of plain tokens would protect against)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    return active.get(token_hash(token))
