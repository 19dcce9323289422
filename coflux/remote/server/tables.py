"""The database schema of one project, as SQLModel tables.

Records are append-mostly: a result, a manifest version, a log line are new
rows, so history is never lost and a sync is a union of immutable facts. The
few columns that change (an execution's ``assigned_at``/``started_at``) record
progress, never outcome: an outcome is a row in ``results``, at most one per
execution (invariant I1, held by the unique constraint).

Integer ids are allocated by the project's orchestrator, the only writer, so
rows can be staged in memory and written in one batch per commit.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, UniqueConstraint
from sqlalchemy.types import JSON
from sqlmodel import Field, SQLModel

# Each project has its own database, so these tables hold one project's data.
metadata = SQLModel.metadata


class Environment(SQLModel, table=True):
    __tablename__ = "environments"
    id: int = Field(primary_key=True)
    name: str = Field(unique=True)
    base_id: int | None = Field(default=None, foreign_key="environments.id")
    created_at: float
    archived_at: float | None = None


class Manifest(SQLModel, table=True):
    """A repository's targets as registered in one environment; newest row wins."""

    __tablename__ = "manifests"
    id: int = Field(primary_key=True)
    environment_id: int = Field(foreign_key="environments.id")
    repository: str
    targets: list = Field(sa_column=Column(JSON, nullable=False))
    created_at: float
    #: The git commit the code was registered from, and whether the tree differed from it.
    git_commit: str | None = None
    git_dirty: bool | None = None
    __table_args__ = (Index("ix_manifests_env_repo", "environment_id", "repository"),)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(primary_key=True)
    environment_id: int = Field(foreign_key="environments.id")
    idempotency_key: str | None = Field(default=None, unique=True)
    created_at: float
    __table_args__ = (Index("ix_runs_env_created", "environment_id", "created_at"),)


class Step(SQLModel, table=True):
    __tablename__ = "steps"
    id: int = Field(primary_key=True)
    run_id: str = Field(foreign_key="runs.id")
    number: int
    parent_execution_id: int | None = Field(default=None)
    #: The n-th call made by the parent execution; with the parent, makes a
    #: re-sent schedule request idempotent.
    call_index: int | None = None
    repository: str
    target: str
    type: str
    arguments: list = Field(sa_column=Column(JSON, nullable=False))
    options: dict = Field(sa_column=Column(JSON, nullable=False))
    #: Key of the ``cache`` option over namespace, version and arguments.
    cache_key: str | None = Field(default=None, index=True)
    #: Key of the ``memo`` option over target and arguments, unique within a run.
    memo_key: str | None = None
    #: The target's code hash in the environment that made the step (from its manifest).
    code_hash: str | None = None
    #: Key over target, code hash and arguments: an incremental re-run reuses an
    #: earlier result of the run with the same key.
    reuse_key: str | None = None
    created_at: float
    __table_args__ = (
        Index("ix_steps_run_memo", "run_id", "memo_key"),
        Index("ix_steps_run_reuse", "run_id", "reuse_key"),
        UniqueConstraint("run_id", "number"),
        UniqueConstraint("parent_execution_id", "call_index"),
    )


class Execution(SQLModel, table=True):
    __tablename__ = "executions"
    id: int = Field(primary_key=True)
    step_id: int = Field(foreign_key="steps.id")
    attempt: int
    environment_id: int = Field(foreign_key="environments.id")
    created_at: float
    execute_after: float | None = None
    #: Arguments when they differ from the step's: a restarted sensor's last checkpoint.
    arguments: list | None = Field(default=None, sa_column=Column(JSON))
    #: The arguments a sensor last checkpointed (progress; a restart begins here).
    checkpoint: list | None = Field(default=None, sa_column=Column(JSON))
    assigned_at: float | None = None
    started_at: float | None = None
    session_id: str | None = None
    #: Made by an incremental re-run (or called from one): its calls reuse earlier
    #: results of the run whose code and arguments are unchanged.
    incremental: bool = False
    #: A re-run's key: the same request sent again (``coflux sync``) finds this execution.
    idempotency_key: str | None = Field(default=None, unique=True)
    #: The commit of the code that ran it (its agent's, when it started), and dirtiness.
    git_commit: str | None = None
    git_dirty: bool | None = None
    __table_args__ = (UniqueConstraint("step_id", "attempt"),)


class Result(SQLModel, table=True):
    """How an execution ended; at most one row per execution (I1)."""

    __tablename__ = "results"
    execution_id: int = Field(primary_key=True, foreign_key="executions.id")
    state: str
    value: dict | None = Field(default=None, sa_column=Column(JSON))
    error: dict | None = Field(default=None, sa_column=Column(JSON))
    reused_from_id: int | None = None
    created_at: float


class Dependency(SQLModel, table=True):
    """Execution ``execution_id`` waited for, or was passed, ``dependency_id``."""

    __tablename__ = "dependencies"
    execution_id: int = Field(primary_key=True)
    dependency_id: int = Field(primary_key=True)
    created_at: float


class LogMessage(SQLModel, table=True):
    __tablename__ = "log_messages"
    id: int = Field(primary_key=True)
    execution_id: int
    #: Position in the execution's log; a re-sent batch is recognised by it.
    sequence: int
    timestamp: float
    level: str
    template: str | None = None
    values: dict = Field(sa_column=Column(JSON, nullable=False))
    __table_args__ = (
        UniqueConstraint("execution_id", "sequence"),
        # A run's log is paged by id within its executions (``queries.get_logs``).
        Index("ix_log_messages_execution_page", "execution_id", "id"),
    )


class AssetRecord(SQLModel, table=True):
    """An asset persisted by an execution (or through the API); its manifest is
    the blob ``ref`` names."""

    __tablename__ = "assets"
    id: int = Field(primary_key=True)
    ref: str = Field(index=True)
    execution_id: int | None = Field(default=None, index=True)
    #: What the execution persisted: the path it named, or "." for its directory.
    path: str
    files: int
    size: int
    created_at: float


# The tables as SQLAlchemy Core objects, for the orchestrator's writes and the queries.
# SQLModel's metaclass sets ``__table__`` on table=True models but does not declare it,
# so mypy cannot see it (hence the ignores); it is a sqlalchemy Table.
T_ENV: Table = Environment.__table__  # type: ignore[attr-defined]
T_MANIFEST: Table = Manifest.__table__  # type: ignore[attr-defined]
T_RUN: Table = Run.__table__  # type: ignore[attr-defined]
T_STEP: Table = Step.__table__  # type: ignore[attr-defined]
T_EXECUTION: Table = Execution.__table__  # type: ignore[attr-defined]
T_RESULT: Table = Result.__table__  # type: ignore[attr-defined]
T_DEPENDENCY: Table = Dependency.__table__  # type: ignore[attr-defined]
T_LOG: Table = LogMessage.__table__  # type: ignore[attr-defined]
T_ASSET: Table = AssetRecord.__table__  # type: ignore[attr-defined]
