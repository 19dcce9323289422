"""Environments from git branches: which environment a workspace works in when none is given.

A production branch (``production_branches`` in ``.coflux.toml``, by default
``main`` and ``master``) gives the production environment; any other branch
gives an environment named after it (see :func:`environment_for_branch`),
created on first use with production as its base, so it inherits
production's cached results. A detached HEAD (a CI checkout) takes its branch
from the CI system's variables.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CofluxError, ConfigError, Conflict, InvalidInput, ServerUnreachable
from ..records.names import validate_environment_name
from .config import Config, Workspace

if TYPE_CHECKING:
    from ..remote.client import Client

_OUTSIDE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_FIX = "pass --env NAME, set COFLUX_ENV, or set environment in .coflux.toml"
_MAX_NAME = 100
#: Where CI systems name the branch a detached checkout builds, most specific first.
CI_BRANCH_VARIABLES = (
    "COFLUX_BRANCH",
    "GITHUB_HEAD_REF",  # GitHub Actions, a pull request's source branch
    "GITHUB_REF_NAME",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",  # GitLab
    "CI_COMMIT_REF_NAME",
    "BUILDKITE_BRANCH",
    "CIRCLE_BRANCH",
    "BITBUCKET_BRANCH",
    "TRAVIS_PULL_REQUEST_BRANCH",
    "TRAVIS_BRANCH",
    "DRONE_SOURCE_BRANCH",
    "DRONE_BRANCH",
    "BUILD_SOURCEBRANCHNAME",  # Azure Pipelines
    "BRANCH_NAME",  # Jenkins multibranch
    "GIT_BRANCH",  # Jenkins git plugin ("origin/NAME")
)


def environment_for_branch(branch: str) -> str:
    """A branch's environment name: the branch itself when it is a valid environment
    name, else a sanitised name and a hash of the branch.

    The mapping is total (every branch gets a valid name) and injective (two
    branches never share one): ``feature/fast-load`` stays ``feature/fast-load``;
    ``feat+x`` becomes ``feat-x..`` and 12 hex digits of the SHA-256 of
    ``feat+x``, so it isn't ``feat-x``'s. Git refuses ``..`` in branch names, so
    no branch kept as it is ends like a sanitised one.
    """
    if ".." not in branch and _valid(branch):
        return branch
    # Letters with accents keep their letter (ü → u); other characters become "-".
    ascii = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    parts = [_OUTSIDE_NAME.sub("-", part).lstrip("._-") for part in ascii.split("/")]
    base = "/".join(p for p in parts if p) or "branch"
    digest = hashlib.sha256(branch.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    base = base[: _MAX_NAME - len(digest) - 2].rstrip("/")
    return f"{base}..{digest}"


def _valid(name: str) -> bool:
    try:
        validate_environment_name(name)
    except InvalidInput:
        return False
    return True


def ci_branch(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(variable, branch) from the CI system's variables, for a detached HEAD."""
    environ = os.environ if environ is None else environ
    for variable in CI_BRANCH_VARIABLES:
        value = (environ.get(variable) or "").strip()
        if variable == "GIT_BRANCH":
            value = value.removeprefix("origin/")
        value = value.removeprefix("refs/heads/")
        if value:
            return variable, value
    return None


def current_branch(root: Path) -> str | None:
    """The checked-out branch of the git repository holding ``root`` (None outside one);
    for a detached HEAD, the branch the CI system's variables name.

    Read from the repository's files where its layout is the usual one (a
    ``.git`` folder, or a worktree's ``.git`` file), which spares a read
    command importing gitpython; gitpython answers every other case (and says
    what is wrong), and both give the same answer (tests/test_branch_names.py).
    """
    try:
        found = _branch_from_files(root)
    except _Unusual:
        return _branch_from_gitpython(root)
    if found is _DETACHED:
        ci = ci_branch()
        return ci[1] if ci is not None else _branch_from_gitpython(root)
    return found


class _Unusual(Exception):
    """A repository layout (or HEAD) the plain reading leaves to gitpython."""


_DETACHED = "\0detached"  # no branch name holds a NUL
_OBJECT_NAME = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")


def _branch_from_files(root: Path) -> str | None:
    """HEAD's branch (``_DETACHED`` for a commit) as gitpython finds it in the usual layouts:
    the nearest folder from ``root`` up with a ``.git`` folder (objects, refs and HEAD), or
    a ``.git`` file naming a worktree's git folder; None when no folder has a ``.git``."""
    if any(os.environ.get(v) is not None for v in ("GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")):
        raise _Unusual  # they change where gitpython looks
    if not root.exists():
        return None
    git_dir = None
    for folder in (root.absolute(), *root.absolute().parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            if (dot_git / "commondir").exists() or not _holds_repository(dot_git):
                raise _Unusual
            git_dir = dot_git
            break
        if dot_git.exists():  # a worktree's (or a submodule's) "gitdir: PATH"
            text = dot_git.read_text(errors="replace").rstrip("\r\n")
            if not text.startswith("gitdir: ") or len(text) < 9:
                raise _Unusual
            git_dir = folder / text.removeprefix("gitdir: ")
            common = git_dir / "commondir"
            if not common.is_file():
                raise _Unusual
            shared = git_dir / common.read_text(errors="replace").rstrip("\r\n")
            if not (git_dir / "HEAD").is_file() or not _holds_repository(shared):
                raise _Unusual
            break
        if (folder / "HEAD").exists():
            raise _Unusual  # the folder may itself be a git folder (a bare repository)
    if git_dir is None:
        return None
    head = git_dir / "HEAD"
    if head.is_symlink():
        raise _Unusual
    tokens = head.read_text(errors="replace").split()
    if len(tokens) == 2 and tokens[0] == "ref:" and tokens[1].startswith("refs/heads/"):
        return tokens[1].removeprefix("refs/heads/")
    if len(tokens) == 1 and _OBJECT_NAME.fullmatch(tokens[0]):
        return _DETACHED
    raise _Unusual


def _holds_repository(directory: Path) -> bool:
    head = directory / "HEAD"
    return (
        head.is_file()
        and not head.is_symlink()
        and (directory / "objects").is_dir()
        and (directory / "refs").is_dir()
    )


def _branch_from_gitpython(root: Path) -> str | None:
    import git  # gitpython; imported here so commands that don't need it start faster

    try:
        repository = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repository.head.is_detached:
        found = ci_branch()
        if found is not None:
            return found[1]
        raise ConfigError(
            f"no environment given and git's HEAD is detached in {repository.working_dir}; "
            f"check out a branch, set COFLUX_BRANCH, or {_FIX}"
        )
    return repository.active_branch.name


def with_environment(config: Config) -> Workspace:
    """The config with its environment filled in from the git branch when none was given.

    ``config.sources["environment"]`` says where it came from: ``flag``, ``env``,
    ``file``, ``git`` (with ``config.branch`` set), or ``default``: outside a
    git repository with the embedded server, production, which is private to
    the workspace; with a shared server that is an error, so nobody writes to
    a team's production by accident.
    """
    if isinstance(config, Workspace):
        return config
    if config.environment is not None:
        return config.working_in(config.environment, None, config.branch)
    branch = current_branch(config.root)
    if branch is None:
        if config.server is None:
            return config.working_in(config.production, "default", None)
        raise ConfigError(
            f"no environment given and {config.root} is not in a git repository; {_FIX}"
        )
    return for_branch(config, branch)


def for_branch(config: Config, branch: str) -> Workspace:
    """The config for working on ``branch``: production for a production branch, else
    the branch's own environment."""
    if branch in config.production_branches:
        return config.working_in(config.production, "git", branch)
    return config.working_in(environment_for_branch(branch), "git", branch)


def ensure_environment(client: Client, config: Config) -> None:
    """Create a branch's environment on first use, based on production, and
    remember the branch's environment in the workspace's state (a configuration
    without an environment, or with one not from git, has nothing to create)."""
    if not isinstance(config, Workspace) or config.sources.get("environment") != "git":
        return
    branch = config.branch
    if branch is None:  # "git" always comes with its branch (see for_branch)
        return
    if config.environment != config.production:
        try:
            with contextlib.suppress(Conflict):
                client.create_environment(config.environment, base=config.production)
        except (ServerUnreachable, Conflict):
            raise
        except CofluxError as e:
            raise type(e)(f"branch {branch!r} → environment {config.environment!r}: {e}") from None
    remember_branch(config, branch)


def remember_branch(config: Workspace, branch: str) -> None:
    """Record ``branch`` → ``config.environment`` for this server and project."""
    import time

    from .state_connection import writing

    with writing(config.data_dir) as c:
        c.execute(
            "INSERT INTO branches (server, project, branch, environment, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (server, project, branch) "
            "DO UPDATE SET environment = excluded.environment, updated_at = excluded.updated_at",
            (
                config.server or "embedded",
                config.project,
                branch,
                config.environment,
                time.time(),
            ),
        )


def known_branches(config: Config) -> list[dict[str, str]]:
    """The branches this workspace has worked on, with their environments."""
    from .state_connection import reading

    if not (config.data_dir / "state.db").exists():
        return []
    with reading(config.data_dir) as c:
        assert c is not None
        rows = c.execute(
            "SELECT branch, environment FROM branches WHERE server = ? AND project = ? "
            "ORDER BY branch",
            (config.server or "embedded", config.project),
        ).fetchall()
    return [{"branch": branch, "environment": environment} for branch, environment in rows]
