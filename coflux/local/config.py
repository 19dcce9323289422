"""Configuration: ``.coflux.toml``, then ``COFLUX_*`` variables, then flags, in one place.

``.coflux.toml`` lives at the workspace root: the nearest directory upwards
holding one, else the git repository's root, else the current directory.

.. code-block:: toml

    server = "http://localhost:7777"   # omit to use the embedded server in .coflux/
    project = "default"
    modules = ["workflows"]
    concurrency = 4
    # provides = { gpu = "a100" }      # placement tags of the agents started here
    production = "production"          # the production environment's name
    production_branches = ["main", "master"]
    # environment = "staging"          # a fixed environment instead of the git branch's
    # token = "cfx_..."                # for a server run with --auth; prefer COFLUX_TOKEN
    # blob_store = "s3://bucket/coflux" # `coflux server`'s blobs in object storage

With no environment given (``--env``, ``COFLUX_ENV`` or ``environment``), the
environment is derived from the git branch (see :mod:`coflux.local.branches`).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidInput
from ..records.names import validate_environment_name, validate_project_name
from ..records.placement import Tags, parse_tag_list, parse_tags, validate_tags

FILE_NAME = ".coflux.toml"
#: The file Coflux 0.6's ``coflux configure`` writes, read when there is no ``.coflux.toml``.
LEGACY_FILE_NAME = "coflux.toml"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
DEFAULT_PROJECT = "default"
DEFAULT_PRODUCTION = "production"
DEFAULT_PRODUCTION_BRANCHES = ("main", "master")
_KEYS = {
    "server",
    "project",
    "environment",
    "modules",
    "concurrency",
    "provides",
    "production",
    "production_branches",
    "token",
    "blob_store",
}


@dataclass(frozen=True)
class Config:
    root: Path
    server: str | None = None
    project: str = DEFAULT_PROJECT
    #: None until given or derived from git (see ``coflux.local.branches``).
    environment: str | None = None
    #: The git branch the environment was derived from, if it was.
    branch: str | None = None
    production: str = DEFAULT_PRODUCTION
    production_branches: tuple[str, ...] = DEFAULT_PRODUCTION_BRANCHES
    modules: list[str] = field(default_factory=list)
    concurrency: int = 4
    #: Placement tags the agents started here provide (targets' ``requires`` match them).
    provides: Tags = field(default_factory=dict)
    #: The project token for a server run with ``--auth`` (never printed).
    token: str | None = field(default=None, repr=False)
    #: Where each setting came from ("file", "env", "flag", "default"), for `coflux status`.
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / ".coflux"

    def working_in(self, environment: str, source: str | None, branch: str | None) -> Workspace:
        """This configuration working in ``environment`` (from ``source``: ``git``,
        ``default``; None keeps the source it has), derived from ``branch`` if it was."""
        # Every field carried over by name, so a setting added to Config is never lost here.
        values = {f.name: getattr(self, f.name) for f in fields(Config)}
        values.update(environment=environment, branch=branch)
        if source is not None:
            values["sources"] = {**self.sources, "environment": source}
        return Workspace(**values)


@dataclass(frozen=True, kw_only=True)
class Workspace(Config):
    """The configuration of a workspace working in one environment: given (``--env``,
    ``COFLUX_ENV``, ``environment`` in the file) or derived from the git branch (see
    ``coflux.local.branches.with_environment``). What needs an environment takes this
    type; what works without one (``cancel``, ``envs create``) takes a ``Config``."""

    environment: str


def find_root(start: Path | None = None) -> Path:
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / FILE_NAME).is_file() or (directory / LEGACY_FILE_NAME).is_file():
            return directory
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    if path.name == LEGACY_FILE_NAME:
        data = _legacy_settings(data, path)
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    return data


def config_file(root: Path) -> Path:
    """``.coflux.toml``, or Coflux 0.6's ``coflux.toml`` when only that one exists."""
    path = root / FILE_NAME
    legacy = root / LEGACY_FILE_NAME
    return legacy if not path.is_file() and legacy.is_file() else path


def _legacy_settings(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Coflux 0.6's settings in our terms: ``[server] host = "localhost:7777"``
    is the server; ``serialisers`` is accepted and has no effect (serialisers are
    chosen by a value's type); ``blobs`` stores are not supported."""
    data = dict(data)
    server = data.get("server")
    if isinstance(server, dict):
        unknown = set(server) - {"host"}
        if unknown or not isinstance(server.get("host", ""), str):
            raise ConfigError(f'{path}: [server] takes only host = "localhost:7777"')
        data.pop("server")
        if server.get("host"):
            data["server"] = server["host"]
    data.pop("serialisers", None)
    if "blobs" in data:
        raise ConfigError(
            f"{path}: [blobs] is not supported: values go to the project's blob store on "
            "the server (remove the [blobs] table)"
        )
    return data


def _check_server(url: str, source: str) -> str:
    """One URL, or several separated by commas (servers on one database: the
    agents and the CLI move to the next when one can't be reached)."""
    urls = []
    for one in (u.strip().rstrip("/") for u in url.split(",")):
        if _HOST_PORT.match(one):
            # Coflux 0.6 names the server as host:port.
            one = f"http://{one}"
        if not one.startswith(("http://", "https://")):
            raise ConfigError(
                f"server {one!r} (from {source}) must be a URL like http://localhost:7777"
                " (or host:port; several: separated by commas)"
            )
        urls.append(one)
    return ",".join(urls)


def blob_store_setting(cwd: Path | None = None) -> str | None:
    """``blob_store`` in the workspace's ``.coflux.toml``, if set."""
    value = _read_file(find_root(cwd) / FILE_NAME).get("blob_store")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{FILE_NAME}: blob_store must be a URL like s3://bucket/prefix")
    return value or None


def _provides(value: Any, source: str, path: Path) -> Tags:
    """Placement tags as each layer writes them: a TOML table in the file,
    ``key=value,key=value`` in ``COFLUX_PROVIDES``, repeated ``--provides key=value``
    (see :mod:`coflux.placement` for several values of one tag)."""
    try:
        if source == "file":
            return validate_tags(value, f"{path}: provides")
        if source == "env":
            return parse_tag_list(str(value), "COFLUX_PROVIDES")
        return parse_tags(list(value), "--provides")
    except InvalidInput as e:
        raise ConfigError(str(e)) from None


def load_config(
    *,
    server: str | None = None,
    project: str | None = None,
    environment: str | None = None,
    provides: list[str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """The settings of the workspace around ``cwd``: ``.coflux.toml``, overridden by
    ``COFLUX_*`` variables, overridden by flags (``provides`` replaces, never merges)."""
    root = find_root(cwd)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [
        ("file", _read_file(config_file(root))),
        (
            "env",
            {
                # COFLUX_HOST and COFLUX_ENVIRONMENT are Coflux 0.6's names.
                "server": os.environ.get("COFLUX_SERVER") or os.environ.get("COFLUX_HOST"),
                "project": os.environ.get("COFLUX_PROJECT"),
                "environment": os.environ.get("COFLUX_ENV") or os.environ.get("COFLUX_ENVIRONMENT"),
                "token": os.environ.get("COFLUX_TOKEN"),
                "provides": os.environ.get("COFLUX_PROVIDES"),
            },
        ),
        (
            "flag",
            {
                "server": server,
                "project": project,
                "environment": environment,
                # An empty list is no flag given (typer's default for a repeatable option).
                "provides": provides or None,
            },
        ),
    ]
    for source, layer in layers:
        for key, value in layer.items():
            if value not in (None, ""):
                values[key], sources[key] = value, source
    if values.get("server"):
        values["server"] = _check_server(str(values["server"]), sources["server"])
    production = values.get("production", DEFAULT_PRODUCTION)
    try:
        validate_project_name(str(values.get("project", DEFAULT_PROJECT)))
        if values.get("environment") is not None:
            validate_environment_name(str(values["environment"]))
        validate_environment_name(str(production))
    except Exception as e:
        raise ConfigError(f"{e} (from {sources.get('environment', 'file')})") from None
    branches = values.get("production_branches", list(DEFAULT_PRODUCTION_BRANCHES))
    if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
        raise ConfigError(
            f"{config_file(root)}: production_branches must be a list of branch names"
        )
    modules = values.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{config_file(root)}: modules must be a list of module names")
    concurrency = values.get("concurrency", 4)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"{config_file(root)}: concurrency must be a positive integer")
    tags = (
        _provides(values["provides"], sources["provides"], config_file(root))
        if "provides" in values
        else {}
    )
    return Config(
        root=root,
        server=values.get("server"),
        project=str(values.get("project", DEFAULT_PROJECT)),
        environment=values.get("environment"),
        production=str(production),
        production_branches=tuple(branches),
        modules=modules,
        concurrency=concurrency,
        provides=tags,
        token=str(values["token"]) if values.get("token") else None,
        sources=sources,
    )
