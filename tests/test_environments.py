"""The environment tree: create, rebase, rename, archive; cycles refused; cache looks upwards."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Workspace

FLOWS = """
    from pathlib import Path
    import coflux as cf

    @cf.task(cache=True)
    def load(key: str, journal: str) -> str:
        with open(Path(journal) / key, "a") as f:
            f.write("x")
        return key.upper()

    @cf.workflow()
    def main(key: str, journal: str) -> str:
        return load(key, journal)
"""


def test_rebase_rename_archive_and_cycles(workspace: Workspace) -> None:
    ws = workspace
    ws.cli("envs", "create", "staging", "--base", "production", check=True)
    ws.cli("envs", "create", "feature/x", "--base", "staging", check=True)
    assert ws.cli_json("envs", "list") == [
        {"name": "feature/x", "base": "staging"},
        {"name": "production", "base": None},
        {"name": "staging", "base": "production"},
    ]
    cycle = ws.cli("envs", "update", "production", "--base", "feature/x")
    assert cycle.returncode == 2
    assert cycle.stderr.strip() == (
        "error: basing 'production' on 'feature/x' would make a cycle "
        "('feature/x' is based on 'production')"
    )
    assert ws.cli_json("envs", "update", "feature/x", "--base", "production") == {
        "name": "feature/x",
        "base": "production",
    }
    assert ws.cli_json("envs", "update", "staging", "--no-base", "--name", "qa") == {
        "name": "qa",
        "base": None,
    }
    busy = ws.cli("envs", "archive", "production")
    assert busy.stderr.strip() == (
        "error: environment 'production' is the base of feature/x; rebase or archive those first"
    )
    assert ws.cli_json("envs", "archive", "qa") == {"name": "qa", "base": None}
    assert [e["name"] for e in ws.cli_json("envs", "list")] == ["feature/x", "production"]
    archived = ws.cli("submit", "flows.py", "main", "--env", "qa")
    assert archived.stderr.strip() == "error: environment 'qa' is archived"


def test_cache_is_inherited_from_the_base_never_the_other_way(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    ws.write("flows.py", FLOWS)
    ws.cli("envs", "create", "dev", "--base", "production", check=True)
    ws.start_agent("flows.py")  # production
    ws.env["COFLUX_ENV"] = "dev"
    ws.start_agent("flows.py")  # dev
    del ws.env["COFLUX_ENV"]

    def run(env: str, key: str) -> dict:
        result = ws.cli(
            "submit", "flows.py", "main", key, str(tmp_path), "--env", env, "--wait", "--json"
        )
        return json.loads(result.stdout)

    production = run("production", "a")
    dev = run("dev", "a")  # inherits production's cached result
    assert dev["environment"] == "dev"
    assert dev["steps"][1]["executions"][0]["state"] == "cached"
    assert (
        dev["steps"][1]["executions"][0]["reused_from"]
        == production["steps"][1]["executions"][0]["id"]
    )
    made_in_dev = run("dev", "b")
    assert made_in_dev["steps"][1]["executions"][0]["state"] == "succeeded"
    again_in_production = run("production", "b")  # a child's result is never visible to its base
    assert again_in_production["steps"][1]["executions"][0]["state"] == "succeeded"
    assert (tmp_path / "a").read_text() == "x"
    assert (tmp_path / "b").read_text() == "xx"
    assert [r["environment"] for r in ws.cli_json("runs", "list", "--env", "dev")] == ["dev", "dev"]
