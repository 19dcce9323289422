"""Values as the pages draw them: trees, previews, defaults and launch fields (pure functions)."""

from __future__ import annotations

from coflux.remote.server.web.graph import timeline
from coflux.remote.server.web.launch import fields
from coflux.remote.server.web.values import Links, arguments, default_value, render

LINKS = Links("p", "production")


def test_a_table_preview_is_drawn_with_shape_and_dtypes() -> None:
    value = {
        "format": "pickle",
        "type": "pandas.DataFrame",
        "repr": "<DataFrame 3x2>",
        "preview": {
            "columns": ["a", "b"],
            "rows": [[1, "x"], [2, "<y>"]],
            "shape": [3, 2],
            "dtypes": {"a": "int64", "b": "object"},
        },
    }
    html = str(render(value, LINKS))
    assert '<span class="type">pandas.DataFrame</span> <code>&lt;DataFrame 3x2&gt;</code>' in html
    assert "<caption>shape 3 × 2</caption>" in html
    assert "<th scope=col>a</th><th scope=col>b</th>" in html
    assert "<td class=muted>int64</td><td class=muted>object</td>" in html
    assert "<tr><td>2</td><td>&lt;y&gt;</td></tr>" in html  # escaped, never markup


def test_any_other_preview_is_a_tree_and_references_are_links() -> None:
    value = {
        "format": "json",
        "data": {"run": {"$ref": 0}, "file": {"$ref": 1}},
        "references": ["ABC:2:1", "a:" + "0" * 32],
    }
    html = str(render(value, LINKS))
    assert 'href="/projects/p/runs/ABC?env=production&amp;step=2">Execution ABC:2:1</a>' in html
    assert f'href="/projects/p/assets/a%3A{"0" * 32}?env=production">Asset a:000000000000…' in html
    preview = str(render({"format": "pickle", "repr": "M()", "preview": {"layers": 3}}, LINKS))
    assert '<code class="json">{&#34;layers&#34;: 3}</code>' in preview


def test_a_big_container_is_cut_and_a_blob_value_is_fetched_on_demand() -> None:
    html = str(render({"format": "json", "data": list(range(250)) + ["x" * 80]}, LINKS))
    assert "<summary>[ 251 items</summary>" in html and "… 51 more" in html
    lazy = str(render({"format": "json", "size": 7384, "blob": "k" * 32}, LINKS, "/v?attempt=1"))
    assert 'data-src="/v?attempt=1"' in lazy and "Show the value (7,384 bytes of JSON)" in lazy
    assert f'href="/api/projects/p/blobs/{"k" * 32}" download>raw JSON' in lazy


def test_arguments_are_named_and_defaults_shown() -> None:
    parameters = [
        {"name": "n", "annotation": "int", "default": None, "kind": "positional"},
        {"name": "label", "annotation": "str", "default": "'daily'", "kind": "positional"},
        {"name": "rest", "annotation": None, "default": None, "kind": "var_positional"},
    ]
    shown = arguments([{"format": "json", "data": 3}], parameters, LINKS, "/v")
    assert [(a["name"], a["default"]) for a in shown] == [("n", False), ("label", True)]
    assert str(shown[1]["html"]) == '<code class="json">&#39;daily&#39;</code>'
    extra = arguments([{"format": "json", "data": i} for i in range(4)], parameters, LINKS, "/v")
    assert [a["name"] for a in extra] == ["n", "label", "*rest[0]", "*rest[1]"]
    assert [a["name"] for a in arguments([{"format": "json", "data": 1}], None, LINKS, "/v")] == [
        "argument 1"
    ]


def test_launch_fields_follow_annotations_and_literal_defaults() -> None:
    made = fields(
        [
            {"name": "n", "annotation": "int", "default": "30"},
            {"name": "when", "annotation": "datetime", "default": "datetime.now()"},
            {"name": "tags", "annotation": "list[str]", "default": "['a']"},
            {"name": "on", "annotation": "bool", "default": "True"},
        ]
    )
    assert [(f["kind"], f["value"], f["default"], f["required"]) for f in made] == [
        ("int", "30", "30", False),
        ("json", "", None, False),
        ("json", '["a"]', '["a"]', False),
        ("bool", "true", "true", False),
    ]
    assert made[3]["checked"] is True
    assert default_value("object()") == (False, None)


def test_the_timeline_has_one_scale_and_names_tasks() -> None:
    def execution(ref: str, created: str, started: str, finished: str) -> dict:
        return {
            "id": ref,
            "state": "succeeded",
            "created_at": f"2026-01-01T00:00:{created}+00:00",
            "started_at": f"2026-01-01T00:00:{started}+00:00",
            "finished_at": f"2026-01-01T00:00:{finished}+00:00",
        }

    run = {
        "steps": [
            {"id": "R:1", "target": "m:flow", "executions": [execution("R:1:1", "00", "00", "10")]},
            {
                "id": "R:2",
                "target": "m:load",
                "executions": [
                    execution("R:2:1", "02", "04", "06"),
                    execution("R:2:2", "06", "06", "08"),
                ],
            },
        ]
    }
    drawn = timeline(run, now=0)
    assert drawn["span"] == 10.0
    assert [
        (r["label"], r["wait_left"], r["wait_width"], r["left"], r["width"]) for r in drawn["rows"]
    ] == [
        ("1. flow", 0.0, 0.0, 0.0, 100.0),
        ("2. load", 20.0, 20.0, 40.0, 20.0),
        ("2. load (attempt 2)", 60.0, 0.0, 60.0, 20.0),
    ]


def test_a_graph_of_thousands_of_distinct_steps_draws_a_readable_part() -> None:
    from coflux.remote.server.web.graph import NODE_LIMIT, layout

    def step(n: int, parent: str | None, target: str) -> dict:
        execution = {"id": f"R:{n}:1", "state": "succeeded", "reused_from": None}
        return {"id": f"R:{n}", "target": target, "parent": parent, "executions": [execution]}

    # A chain of 5,000 steps, each calling the next: no group forms.
    chain = {
        "steps": [step(n, f"R:{n - 1}:1" if n > 1 else None, f"m:t{n}") for n in range(1, 5001)]
    }
    drawn = layout(chain, [], set())
    assert (len(drawn["nodes"]), drawn["hidden"]) == (NODE_LIMIT, 5000 - NODE_LIMIT)
    # A fan-out of 1,000 calls of one target: one group, expandable.
    fan = {
        "steps": [step(1, None, "m:root")] + [step(n, "R:1:1", "m:leaf") for n in range(2, 1002)]
    }
    drawn = layout(fan, [], set())
    assert [n["group"]["label"] if n["group"] else n["target"] for n in drawn["nodes"]] == [
        "m:root",
        "1000 succeeded",
    ]
    assert len(layout(fan, [], {"g2"})["nodes"]) == NODE_LIMIT  # expanded, then capped


def test_an_assets_files_form_a_tree_with_folder_totals() -> None:
    from coflux.assets import Entry
    from coflux.remote.server.routes.asset_pages import file_tree

    entries = [
        Entry(p, 0o644, size, ())
        for p, size in [("b.txt", 3), ("data/x/1.csv", 10), ("data/2.png", 5), ("a.bin", 1)]
    ]
    assert [
        (r["name"], r["depth"], r["size"], r.get("files"), r.get("kind"))
        for r in file_tree(entries)
    ] == [
        ("data/", 0, 15, 2, None),
        ("x/", 1, 10, 1, None),
        ("1.csv", 2, 10, None, "text"),
        ("2.png", 1, 5, None, "image"),
        ("a.bin", 0, 1, None, "other"),
        ("b.txt", 0, 3, None, "text"),
    ]


def test_a_late_rerun_doesnt_squash_the_timeline() -> None:
    def execution(ref: str, created: float, finished: float) -> dict:
        def at(t: float) -> str:
            return f"2026-01-01T{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}+00:00"

        return {
            "id": ref,
            "state": "succeeded",
            "created_at": at(created),
            "started_at": at(created),
            "finished_at": at(finished),
        }

    # A run of 10 s, and a re-run of its step two hours later.
    run = {
        "steps": [
            {"id": "R:1", "target": "m:flow", "executions": [execution("R:1:1", 0, 10)]},
            {
                "id": "R:2",
                "target": "m:load",
                "executions": [execution("R:2:1", 2, 6), execution("R:2:2", 7200, 7205)],
            },
        ]
    }
    drawn = timeline(run, now=0)
    assert [(r["left"], r["width"]) for r in drawn["rows"]] == [
        (0.0, 64.0),
        (12.8, 25.6),
        (68.0, 32.0),
    ]
    assert drawn["breaks"] == [{"left": 64.0, "width": 4.0, "seconds": 7190.0}]
