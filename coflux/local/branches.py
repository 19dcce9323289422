"""Environments from git branches: which environment a workspace works in when none is given.

A production branch (``production_branches`` in ``.coflux.toml``, by default
``main`` and ``master``) gives the production environment; any other branch
gives an environment named after it, created on first use with production as
its base, so it inherits production's cached results.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, Conflict
from ..remote.client import Client

_OUTSIDE_NAME = re.compile(r"[^A-Za-z0-9._/-]")
_FIX = "pass --env NAME, set COFLUX_ENV, or set environment in .coflux.toml"


def environment_for_branch(branch: str) -> str:
    """A branch's environment name: characters outside ``[A-Za-z0-9._/-]`` become ``-``.

    ``feature/fast-load`` stays ``feature/fast-load``; ``fix #12`` becomes ``fix--12``.
    """
    name = _OUTSIDE_NAME.sub("-", branch).strip("/")
    # Path-like parts that environment names refuse ("." and "..", empty parts).
    parts = [p if p not in (".", "..") else p.replace(".", "-") for p in name.split("/") if p]
    name = "/".join(parts)[:100]
    if not name or not name[0].isalnum():
        name = f"b{name}"[:100]
    return name


def current_branch(root: Path) -> str | None:
    """The checked-out branch of the git repository holding ``root`` (None outside one)."""
    import git  # gitpython; imported here so commands that don't need it start faster

    try:
        repository = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repository.head.is_detached:
        raise ConfigError(
            f"no environment given and git's HEAD is detached in {repository.working_dir}; "
            f"check out a branch, or {_FIX}"
        )
    return repository.active_branch.name


def with_environment(config: Config) -> Config:
    """The config with its environment filled in from the git branch when none was given.

    ``config.sources["environment"]`` says where it came from: ``flag``, ``env``,
    ``file``, ``git`` (with ``config.branch`` set), or ``default``: outside a
    git repository with the embedded server, production, which is private to
    the workspace; with a shared server that is an error, so nobody writes to
    a team's production by accident.
    """
    if config.environment is not None:
        return config
    branch = current_branch(config.root)
    if branch is None:
        if config.server is None:
            return _derived(config, config.production, "default", None)
        raise ConfigError(
            f"no environment given and {config.root} is not in a git repository; {_FIX}"
        )
    if branch in config.production_branches:
        return _derived(config, config.production, "git", branch)
    return _derived(config, environment_for_branch(branch), "git", branch)


def _derived(config: Config, environment: str, source: str, branch: str | None) -> Config:
    return replace(
        config,
        environment=environment,
        branch=branch,
        sources={**config.sources, "environment": source},
    )


def ensure_environment(client: Client, config: Config) -> None:
    """Create a branch's environment on first use, based on production, and
    remember the branch's environment in the workspace's state."""
    if config.sources.get("environment") != "git":
        return
    assert config.environment is not None and config.branch is not None
    if config.environment != config.production:
        with contextlib.suppress(Conflict):
            client.create_environment(config.environment, base=config.production)
    remember_branch(config)


def remember_branch(config: Config) -> None:
    """Record ``config.branch`` → ``config.environment`` for this server and project."""
    from sqlalchemy.dialects.sqlite import insert

    from . import state

    key = {"server": config.server or "embedded", "project": config.project}
    values = {"environment": config.environment, "updated_at": state.now()}
    with state.writing(config.data_dir) as c:
        c.execute(
            insert(state.T_BRANCHES)
            .values(**key, branch=config.branch, **values)
            .on_conflict_do_update(index_elements=[*key, "branch"], set_=values)
        )


def known_branches(config: Config) -> list[dict[str, str]]:
    """The branches this workspace has worked on, with their environments."""
    from sqlalchemy import select

    from . import state

    if not (config.data_dir / "state.db").exists():
        return []
    table = state.T_BRANCHES
    with state.engine(config.data_dir).connect() as c:
        rows = c.execute(
            select(table.c.branch, table.c.environment)
            .where(table.c.server == (config.server or "embedded"))
            .where(table.c.project == config.project)
            .order_by(table.c.branch)
        )
        return [{"branch": r.branch, "environment": r.environment} for r in rows]
