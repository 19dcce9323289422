"""``coflux runs diff RUN --env A --env B``: what environment B changed in a run against A."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer

from ..errors import InvalidInput
from .common import ProjectOption, ServerOption, config, console

LABELS = {
    "same": "same",
    "reused": "reused",
    "new_code": "new code",
    "executed": "executed",
    "only_a": "only in A",
    "only_b": "only in B",
}


def diff(
    run: Annotated[str, typer.Argument(metavar="RUN", help="A run ID.")],
    env: Annotated[
        list[str], typer.Option("--env", help="Two environments: A (e.g. production), then B.")
    ],
    server: ServerOption = None,
    project: ProjectOption = None,
    json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Compare a run as two environments see it: steps reused, executed again with new
    code (the hash that changed), and results that differ.

    Example:  coflux runs diff 7K2QF9XH3M --env production --env feature
    """
    from ..local.connection import open_client
    from ..records.references import parse_reference, run_of

    run_id = run_of(parse_reference(run))
    if len(env) != 2:
        raise InvalidInput("give two environments: --env production --env BRANCH")
    with open_client(config(server, project, derive=False)) as client:
        result = client.get_diff(run_id, env[0], env[1])
    if json:
        print(jsonlib.dumps(result, indent=2))
        return
    out = console()
    a, b = result["environments"]
    summary = ", ".join(f"{n} {LABELS.get(k, k)}" for k, n in result["summary"].items())
    out.print(f"Run {result['run']}: {b} against {a} ({summary})", highlight=False)
    for step in result["steps"]:
        status = LABELS.get(step["status"], step["status"])
        line = f"  {step['place']:<8} {step['target']:<32} {status}"
        if step["status"] == "new_code":
            line += (
                f"  {(step['a']['code_hash'] or '?')[:10]} → {(step['b']['code_hash'] or '?')[:10]}"
            )
        if step["differs"] and step["a"] and step["b"]:
            line += "  results differ"
        out.print(line, highlight=False, markup=False)
        for d in step["diff"][:5]:
            out.print(
                f"      {d['path']}: {jsonlib.dumps(d['a'])} → {jsonlib.dumps(d['b'])}",
                highlight=False,
                markup=False,
            )
