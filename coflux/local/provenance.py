"""Provenance of registered code: the git commit it came from, whether the tree was dirty,
and the rule that keeps uncommitted or unreviewed code out of production.

``coflux register`` into the production environment is refused from a dirty
working tree unless ``--allow-dirty`` is given, and from a branch that isn't a
production branch (or a detached HEAD naming none) unless ``--env`` names
production on the command line: one line says why and how to mean it.
``coflux dev`` registers every edit, so it serves a shared server's production
only with ``--allow-dirty``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import Config
from .follow import git_dir, read_head


def provenance(root: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git repository holding ``root`` (None outside one)."""
    try:
        import git  # gitpython; imported here so commands that don't need it start faster
    except ImportError:  # no git executable on this machine: nothing to tell
        return None
    try:
        repository = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    # Reading the status must not take git's index lock from the user's own git commands.
    repository.git.update_environment(GIT_OPTIONAL_LOCKS="0")
    try:
        commit: str | None = repository.head.commit.hexsha
    except ValueError:  # a repository without commits yet
        commit = None
    return {"commit": commit, "dirty": repository.is_dirty(untracked_files=True)}


def check_production(
    config: Config, found: dict[str, Any] | None, allow_dirty: bool, env_flag: str | None
) -> None:
    """Refuse registering into production from a dirty tree or a non-production branch."""
    if config.environment != config.production or found is None:
        return
    if found["dirty"] and not allow_dirty:
        raise ConfigError(
            f"refusing to register into {config.production!r} from a working tree with "
            "uncommitted changes; commit them, or pass --allow-dirty to register them anyway"
        )
    directory = git_dir(config.root)
    branch = read_head(directory).branch if directory is not None else None
    if branch in config.production_branches or env_flag == config.production:
        return
    where = f"branch {branch!r}" if branch is not None else "a detached HEAD"
    raise ConfigError(
        f"refusing to register into {config.production!r} from {where}, which is not a "
        f"production branch ({', '.join(config.production_branches)}); "
        f"pass --env {config.production} to mean it"
    )


def check_dev(config: Config, allow_dirty: bool) -> None:
    """``coflux dev`` serves the working tree, uncommitted edits and all: into a shared
    server's production only with ``--allow-dirty`` (the embedded server is private)."""
    if config.server is None or config.environment != config.production or allow_dirty:
        return
    where = f"branch {config.branch!r}" if config.branch else f"environment {config.production!r}"
    raise ConfigError(
        f"refusing to serve your working tree in {config.production!r} ({where}) on "
        f"{config.server}: coflux dev registers every edit; switch to a branch of your own "
        "(git switch -c NAME), or pass --allow-dirty to mean it"
    )
