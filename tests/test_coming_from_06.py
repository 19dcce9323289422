"""Forms of Coflux 0.6's documented API and CLI that are aliases here:
``wait=`` as a set, ``requires=`` with booleans and lists, agents providing
several values per tag, ``-p``/``-e``/``--host``, ``COFLUX_ENVIRONMENT`` and
``COFLUX_HOST``, a ``host:port`` server, ``coflux.toml``, ``agent --register``
and ``--dev``, ``Asset.id``, ``suspense(None)``, checkpoints bound to the
sensor's signature."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Workspace, one_line_error, wait_until

import coflux as cf
from coflux.errors import ConfigError, InvalidInput
from coflux.execution.checkpoints import bind_checkpoint
from coflux.local.config import load_config
from coflux.records.placement import parse_tag_list, parse_tags, satisfies, validate_tags


def test_wait_memo_and_params_take_sets_in_parameter_order() -> None:
    @cf.task(wait={"c", "a"}, memo=frozenset({"b"}), cache=True, cache_params={"c", "b"})
    def create(a: int, b: int, c: int) -> int:
        return a + b + c

    assert create.spec.options.wait == ("a", "c")
    assert create.spec.options.memo == ("b",)
    assert create.spec.options.cache is not None and create.spec.options.cache.params == ("b", "c")
    with pytest.raises(InvalidInput, match="wait names unknown parameter"):
        cf.task(wait={"nope"})(lambda a: a)


def test_requires_takes_booleans_and_lists() -> None:
    @cf.task(requires={"gpu": True, "region": ["us", "eu"], "tier": "gold", "spot": False})
    def train() -> None: ...

    assert train.spec.options.requires == {
        "gpu": "true",
        "region": ["eu", "us"],
        "tier": "gold",
        "spot": "false",
    }
    with pytest.raises(InvalidInput, match="tag 'region' needs at least one value"):
        cf.task(requires={"region": []})(lambda: None)
    with pytest.raises(InvalidInput, match="tag 'n' needs a non-empty string value"):
        cf.task(requires={"n": [1]})(lambda: None)


def test_the_matching_rule() -> None:
    agent = validate_tags({"region": ["eu", "us"], "gpu": True}, "provides")
    assert agent == {"region": ["eu", "us"], "gpu": "true"}
    assert satisfies(agent, {"region": ["us", "ap"]})
    assert satisfies(agent, {"region": "eu", "gpu": "true"})
    assert not satisfies(agent, {"region": ["ap", "jp"]})
    assert not satisfies(agent, {"zone": "b"})
    assert satisfies(agent, {})
    assert parse_tags(["region=eu,us", "gpu=true"], "--provides") == agent
    assert parse_tags(["region=eu", "region=us", "gpu=true"], "--provides") == agent
    assert parse_tags(["region:eu", "region:us", "gpu:true"], "--provides") == agent
    with pytest.raises(InvalidInput, match="expected key=value"):
        parse_tags(["gpu"], "--provides")
    assert parse_tag_list("region=eu,region=us,gpu=true", "COFLUX_PROVIDES") == agent


def test_aliases_in_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COFLUX_SERVER", "COFLUX_HOST", "COFLUX_ENV", "COFLUX_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COFLUX_ENVIRONMENT", "staging")
    monkeypatch.setenv("COFLUX_HOST", "localhost:7777")
    cfg = load_config(cwd=tmp_path)
    assert (cfg.environment, cfg.server) == ("staging", "http://localhost:7777")
    monkeypatch.setenv("COFLUX_ENV", "dev")  # our name wins over the alias
    assert load_config(cwd=tmp_path).environment == "dev"
    assert load_config(cwd=tmp_path, server="[::1]:7000").server == "http://[::1]:7000"
    with pytest.raises(ConfigError, match="must be a URL like"):
        load_config(cwd=tmp_path, server="localhost")


def test_coflux_toml_as_coflux_configure_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("COFLUX_SERVER", "COFLUX_HOST", "COFLUX_PROJECT", "COFLUX_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("COFLUX_ENVIRONMENT", raising=False)
    monkeypatch.delenv("COFLUX_PROVIDES", raising=False)
    (tmp_path / "coflux.toml").write_text(
        'project = "shop"\nenvironment = "dev"\nconcurrency = 3\n'
        'provides = { region = ["eu", "us"], gpu = true }\n'
        '[server]\nhost = "localhost:7777"\n'
        '[[serialisers]]\ntype = "pandas"\n'
    )
    cfg = load_config(cwd=tmp_path)
    assert (cfg.project, cfg.environment, cfg.concurrency) == ("shop", "dev", 3)
    assert cfg.server == "http://localhost:7777"
    assert cfg.provides == {"region": ["eu", "us"], "gpu": "true"}
    (tmp_path / "coflux.toml").write_text("[blobs]\nthreshold = 100\n")
    with pytest.raises(ConfigError, match=r"\[blobs\] is not supported"):
        load_config(cwd=tmp_path)
    # .coflux.toml, ours, wins when both are there.
    (tmp_path / ".coflux.toml").write_text('project = "ours"\n')
    assert load_config(cwd=tmp_path).project == "ours"


def test_a_checkpoint_is_bound_to_the_sensor_signature() -> None:
    def ticker(interval: int = 300, last_tick: float | None = None) -> None: ...

    signature = inspect.signature(ticker)
    assert bind_checkpoint(signature, []) == [300, None]
    assert bind_checkpoint(signature, [5, 12.5]) == [5, 12.5]
    with pytest.raises(InvalidInput, match="checkpoint: too many positional arguments"):
        bind_checkpoint(signature, [1, 2, 3])


def test_asset_id_is_its_reference() -> None:
    asset = cf.Asset("a:" + "0" * 32)
    assert asset.id == asset.ref == "a:" + "0" * 32


PLACED = """
    import os
    import coflux as cf

    @cf.task(requires={"region": ["us", "jp"]})
    def in_us_or_jp() -> str:
        return os.environ["AGENT_NAME"]

    @cf.task(requires={"gpu": True, "region": "ap"})
    def gpu_in_ap() -> str:
        return os.environ["AGENT_NAME"]

    @cf.workflow()
    def place() -> list:
        return [in_us_or_jp(), gpu_in_ap()]
"""


def test_multi_valued_tags_place_executions(workspace: Workspace) -> None:
    workspace.write("placed.py", PLACED)
    workspace.start_agent(
        "placed.py", args=("--provides", "region=eu,us"), env={"AGENT_NAME": "eu-us"}
    )
    workspace.start_agent(
        "placed.py",
        env={"AGENT_NAME": "ap-gpu", "COFLUX_PROVIDES": "region=ap,gpu=true"},
    )
    with workspace.client() as client:
        listed = sorted((a["provides"] for a in client.list_agents() if a["connected"]), key=str)
    assert listed == [{"gpu": "true", "region": "ap"}, {"region": ["eu", "us"]}]
    run = workspace.cli_json("submit", "placed.py", "place", "--wait")
    assert run["result"] == ["eu-us", "ap-gpu"]


def test_short_flags_host_and_register(workspace: Workspace) -> None:
    workspace.write("placed.py", PLACED)
    address = workspace.server.removeprefix("http://")
    env = {"COFLUX_SERVER": "", "COFLUX_PROJECT": "", "COFLUX_ENV": ""}
    agent = workspace.start_agent(
        "placed.py",
        args=("--register", "-p", workspace.project, "-e", "production", "--host", address),
        env=env,
    )
    assert agent.poll() is None
    listed = workspace.cli(
        "runs",
        "list",
        "-p",
        workspace.project,
        "--environment",
        "production",
        "--host",
        address,
        "--json",
        env_extra=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"
    one_line_error(
        workspace.cli("runs", "list", "--host", "localhost", env_extra=env), "must be a URL like"
    )


def test_agent_dev_is_coflux_dev(workspace: Workspace) -> None:
    """`coflux agent --dev` is `coflux dev`: here in an environment of its own
    (into a shared server's production, dev refuses without --allow-dirty)."""
    workspace.write("placed.py", PLACED)
    workspace.cli("envs", "create", "dev-env", check=True)
    log = workspace.root / "dev.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "coflux", "agent", "--dev", "placed.py"],
            cwd=workspace.root,
            env={**workspace.environ, "COFLUX_ENV": "dev-env"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "Watching" in log.read_text() or process.poll() is not None, 30)
        assert log.read_text().startswith(f"Dev: placed.py in {workspace.project}/dev-env"), (
            log.read_text()
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(20)
