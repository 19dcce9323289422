"""Dependencies shared by route modules, as typed aliases.

The references in a path are parsed here, once, into what they name: ``RunDep``
(``{run}``, a run ID) and ``StepDep`` (``{run}`` and ``{step}``, a
``StepRef``). A path that names nothing (a malformed ID, or a step or an
execution where a run ID goes) answers 404 with one line saying why; the
handlers only ever see a valid reference.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.requests import HTTPConnection

from ...errors import InvalidInput, NotFound
from ...records.references import StepRef, kind_of, parse_reference
from .orchestration.project import ProjectOrchestrator
from .orchestration.registry import Projects
from .security import GRANT


def get_projects(request: Request) -> Projects:
    return request.app.state.projects


def visible_project(request: HTTPConnection) -> str | None:
    """The project the request's token is confined to (None when the server runs without auth)."""
    grant = request.scope.get(GRANT)
    return grant.project if grant is not None else None


async def get_project(project: str, request: Request) -> ProjectOrchestrator:
    return await request.app.state.projects.get(project, visible_project(request))


def run_in_path(run: str) -> str:
    """The run ID of ``{run}`` (any case, as users type it)."""
    try:
        ref = parse_reference(run)
    except InvalidInput:
        raise NotFound(
            f"no run {run!r}: a run ID is 10 characters of 0-9 and A-Z "
            "without I, L, O or U (e.g. 7K2QF9XH3M)"
        ) from None
    if not isinstance(ref, str):
        # Once this dropped the rest silently: /runs/RUN:2/cancel cancelled the whole run.
        kind = kind_of(ref)
        raise NotFound(
            f"{run!r} is {'an' if kind == 'execution' else 'a'} {kind}, not a run: "
            f"the path takes the run ID alone ({ref.run_id})"
        )
    return ref


RunDep = Annotated[str, Depends(run_in_path)]


def step_in_path(run: RunDep, step: Annotated[int, Path(ge=1)]) -> StepRef:
    """The step of ``{run}/steps/{step}``."""
    return StepRef(run, step)


ProjectsDep = Annotated[Projects, Depends(get_projects)]
VisibleDep = Annotated[str | None, Depends(visible_project)]
ProjectDep = Annotated[ProjectOrchestrator, Depends(get_project)]
StepDep = Annotated[StepRef, Depends(step_in_path)]
