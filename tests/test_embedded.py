"""With no server configured, commands use the embedded server in .coflux/; config precedence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coflux.errors import ConfigError
from coflux.local.config import load_config

HELLO = """
    import coflux as cf

    @cf.task()
    def greeting(name: str) -> str:
        return f"Hello, {name}!"

    @cf.workflow()
    def greet(name: str) -> str:
        return greeting(name)

    @cf.workflow()
    def broken(name: str) -> str:
        raise ValueError(f"no greeting for {name}")
"""


def coflux(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFLUX_")}
    return subprocess.run(
        [sys.executable, "-m", "coflux", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_coflux_run_on_the_embedded_default(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # the workspace root is the repository root
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hello.py").write_text(textwrap.dedent(HELLO))
    result = coflux(tmp_path / "sub", "run", "hello.py", "greet", "Joe")
    assert result.returncode == 0, result.stderr
    assert "Result: 'Hello, Joe!'" in result.stdout
    assert "hello:greeting  succeeded" in result.stdout
    assert (tmp_path / ".coflux" / "server" / "projects" / "default.sqlite").is_file()
    assert not (
        tmp_path / ".coflux" / "server" / "embedded.json"
    ).exists()  # stopped with the command

    document = json.loads(
        coflux(tmp_path / "sub", "run", "hello.py", "greet", "Ada", "--json").stdout
    )
    assert (document["state"], document["result"], document["environment"]) == (
        "succeeded",
        "Hello, Ada!",
        "production",
    )
    # A later command starts the embedded server again over the same data: both runs are there.
    runs = json.loads(coflux(tmp_path, "runs", "list", "--json").stdout)
    assert [r["workflow"] for r in runs] == ["hello:greet", "hello:greet"]

    failed = coflux(tmp_path / "sub", "run", "hello.py", "broken", "Bo")
    assert failed.returncode == 1
    assert "ValueError: no greeting for Bo" in failed.stdout


def test_configuration_precedence_file_then_environment_then_flags(
    tmp_path: Path, monkeypatch
) -> None:
    for name in ("COFLUX_SERVER", "COFLUX_PROJECT", "COFLUX_ENV"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".coflux.toml").write_text(
        'server = "http://files.example:7777"\nproject = "from-file"\nenvironment = "staging"\n'
        'modules = ["flows"]\nconcurrency = 2\n'
    )
    (tmp_path / "deep" / "er").mkdir(parents=True)
    config = load_config(cwd=tmp_path / "deep" / "er")
    assert (config.root, config.server, config.project, config.environment) == (
        tmp_path,
        "http://files.example:7777",
        "from-file",
        "staging",
    )
    assert (config.modules, config.concurrency) == (["flows"], 2)
    monkeypatch.setenv("COFLUX_PROJECT", "from-env")
    monkeypatch.setenv("COFLUX_ENV", "dev")
    config = load_config(cwd=tmp_path)
    assert (config.project, config.environment, config.sources["project"]) == (
        "from-env",
        "dev",
        "env",
    )
    config = load_config(cwd=tmp_path, project="from-flag", server="http://flag:1/")
    assert (config.project, config.server, config.sources["project"]) == (
        "from-flag",
        "http://flag:1",
        "flag",
    )


def test_bad_configuration_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("COFLUX_SERVER", raising=False)
    (tmp_path / ".coflux.toml").write_text("projekt = 'typo'\n")
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) projekt"):
        load_config(cwd=tmp_path)
    (tmp_path / ".coflux.toml").write_text("server = [\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(cwd=tmp_path)
