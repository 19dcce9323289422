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

#: Untracked folders that tools make beside the code, never part of it: Coflux's
#: own workspace, Python's byte-code caches (a virtual environment is known by
#: its ``pyvenv.cfg``).
_NOT_CODE = (".coflux", "__pycache__")


def provenance(root: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git repository holding ``root`` (None outside one)."""
    found = _status(root)
    if found is None:
        return None
    commit, changes = found
    return {"commit": commit, "dirty": bool(changes)}


def _status(root: Path) -> tuple[str | None, list[str]] | None:
    """The commit of HEAD and the paths git would list as changed or untracked,
    less what tools make beside the code (``_NOT_CODE``, ``*.pyc``, a virtual
    environment): running a workflow must not make its own tree dirty."""
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
    top = Path(repository.working_tree_dir or root)
    entries = iter(repository.git.status("--porcelain", "-z").split("\0"))
    changes = []
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":  # a rename or copy: its old path follows
            next(entries, None)
        if code == "??" and _made_by_tools(top / path):
            continue
        changes.append(path)
    return commit, changes


def _made_by_tools(path: Path) -> bool:
    return (
        path.name in _NOT_CODE
        or path.suffix == ".pyc"
        or (path.is_dir() and (path / "pyvenv.cfg").is_file())
    )


def check_production(
    config: Config, found: dict[str, Any] | None, allow_dirty: bool, env_flag: str | None
) -> None:
    """Refuse registering into production from a dirty tree or a non-production branch."""
    if config.environment != config.production or found is None:
        return
    if found["dirty"] and not allow_dirty:
        changes = (_status(config.root) or (None, []))[1]
        named = ", ".join(changes[:3]) + (", ..." if len(changes) > 3 else "")
        raise ConfigError(
            f"refusing to register into {config.production!r} from a working tree with "
            f"uncommitted changes ({named}); commit them, or pass --allow-dirty to register "
            "them anyway"
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
