"""The reads behind the web UI on SQLite and PostgreSQL alike: run-list filters and
pages, log filters, what moved since a moment, and the comparison of two views."""

from __future__ import annotations

import html as html_module
import re
import time
from pathlib import Path

import httpx
from conftest import private_stack

FLOWS = """
    import coflux as cf

    @cf.task()
    def double(x: int) -> int:
        cf.log_info("doubling {x}", x=x)
        if x < 0:
            cf.log_warning("negative {x}", x=x)
        return x * 2

    @cf.workflow()
    def many(n: int) -> list:
        return [double(i - 1) for i in range(n)]
"""


def test_the_ui_reads_on_both_backends(tmp_path: Path, database_url: str) -> None:
    with private_stack(tmp_path, database_url=database_url or None) as (server, ws):
        ws.write("flows.py", FLOWS)
        ws.cli("envs", "create", "feature", "--base", "production", check=True)
        ws.start_agent("flows.py")
        ws.env["COFLUX_ENV"] = "feature"
        ws.start_agent("flows.py", wait=False)
        ws.env["COFLUX_ENV"] = "production"
        ws.wait_for_agents(2)
        ids = [ws.cli_json("submit", "flows.py", "many", str(n), "--wait")["id"] for n in (1, 10)]
        api = f"{server.url}/api/projects/{ws.project}"
        page = f"{server.url}/projects/{ws.project}"

        # The run list: newest first, a page of one at a time, filtered and searched.
        html = httpx.get(page, params={"env": "production"}).text
        assert re.findall(r'<tr data-run="(\w+)">', html) == ids[::-1]
        html = httpx.get(page, params={"env": "production", "q": ids[0][:6]}).text
        assert re.findall(r'<tr data-run="(\w+)">', html) == [ids[0]]
        html = httpx.get(page, params={"env": "production", "q": "MANY"}).text  # any case
        assert len(re.findall(r'<tr data-run="(\w+)">', html)) == 2
        html = httpx.get(page, params={"env": "production", "state": "failed"}).text
        assert re.findall(r'<tr data-run="(\w+)">', html) == []
        assert "No runs match." in html

        # Logs: by level (and above), by text, since a time; failures aside.
        logs = httpx.get(f"{api}/runs/{ids[1]}/logs", params={"level": "warning"}).json()
        assert [(m["level"], m["text"], m["target"]) for m in logs] == [
            ("warning", "negative -1", "flows:double")
        ]
        logs = httpx.get(f"{api}/runs/{ids[1]}/logs", params={"grep": "DOUBLING 8"}).json()
        assert [m["text"] for m in logs] == ["doubling 8"]
        logs = httpx.get(f"{api}/runs/{ids[1]}/logs", params={"since": "1h", "step": 3}).json()
        assert [m["text"] for m in logs] == ["doubling 0"]
        assert httpx.get(f"{api}/runs/{ids[1]}/logs", params={"level": "loud"}).status_code == 422
        # The run page takes the same filters from its URL.
        html = httpx.get(
            f"{page}/runs/{ids[1]}", params={"env": "production", "level": "warning"}
        ).text
        assert re.findall(r'<span class="text">([^<]*)</span>', html) == ["negative -1"]
        bad = httpx.get(f"{page}/runs/{ids[1]}", params={"env": "production", "since": "soon"})
        # A page's error is a page (the API answers JSON).
        assert bad.status_code == 422 and "--since 'soon'" in html_module.unescape(bad.text)

        # What moved: nothing since now; everything since the epoch.
        changes = f"{page}/runs/{ids[1]}/changes"
        moved = httpx.get(
            changes, params={"env": "production", "moved_since": time.time(), "known": 11}
        ).json()
        assert (moved["structure"], moved["steps"], moved["active"]) == (False, [], False)
        moved = httpx.get(
            changes, params={"env": "production", "moved_since": 0, "known": 11}
        ).json()
        assert len(moved["steps"]) == 11 and moved["groups"] == [
            {"key": "g2", "state": "succeeded", "label": "10 succeeded", "size": 10}
        ]
        assert moved["logs"].count('class="line') == 11 and moved["last_log"] > 0

        # The same run as a branch sees it after re-running its root: every call reused.
        ws.cli("rerun", f"{ids[1]}:1", "--env", "feature", "--wait", check=True)
        diff = httpx.get(
            f"{api}/runs/{ids[1]}/diff", params=[("env", "production"), ("env", "feature")]
        ).json()
        assert diff["summary"] == {"executed": 1, "reused": 10}
        assert {s["status"] for s in diff["steps"] if s["target"] == "flows:double"} == {"reused"}
        assert [s["differs"] for s in diff["steps"]] == [False] * 11  # same code, same values
        html = httpx.get(page, params={"env": "feature"}).text
        assert f'data-execution="{ids[1]}:1:2"' in html  # listed among feature's re-runs

        # A member of the group run again: the group counts its latest attempt only.
        ws.cli("rerun", f"{ids[1]}:3", "--wait", check=True)
        # (Seen from feature, the re-run's calls are a group of their own, g12.)
        for env, groups in (("production", ["g2"]), ("feature", ["g2", "g12"])):
            moved = httpx.get(changes, params={"env": env, "moved_since": 0, "known": 0}).json()
            sizes = [
                (g["key"], g["size"], sum(int(n) for n in re.findall(r"\d+", g["label"])))
                for g in moved["groups"]
            ]
            assert sizes == [(key, 10, 10) for key in groups], (env, moved["groups"])
