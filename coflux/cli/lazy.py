"""The root command group, whose commands are imported when one is used.

``coflux runs list`` used to import every command module and have typer turn
every command of the tree into a click command (inspecting each function's
signature) before running one: a bare Python start of work, and more, for
commands it never ran (issue 25). Here the root group knows each command's
name, module and attribute, and builds a command the first time it is asked
for, through the same typer calls ``add_typer``/``command`` made on the root
(so each is built exactly as before, with the root's settings).

What lists every command loads them all, as it did before: ``coflux --help``
(each command's one line of help is its own), shell completion, and anything
walking ``group.commands.items()``. A mistyped command is answered without
loading any (its suggestions need only the names).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup

#: Where a command lives: its module under ``coflux.cli``, and the attribute
#: there (a ``typer.Typer`` is a group, a function one command).
Entry = tuple[str, str]


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name, each built on first look-up; iteration (the
    names, in order) builds none."""

    def __init__(self, build: Callable[[str], Any], names: list[str]) -> None:
        self._build = build
        self._names = list(names)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            self._built[name] = self._build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


def lazy_group(
    commands: dict[str, Entry],
    extra: dict[str, dict[str, Entry]],
    settings: dict[str, Any],
) -> type[TyperGroup]:
    """A group class (``typer.Typer(cls=...)``) whose commands are ``commands``, in
    that order, built on first use; ``extra[group]`` adds commands from other
    modules to a group. ``settings`` are the root Typer's (markup, exceptions),
    with which each command is built as the root would have built it."""

    def attribute(entry: Entry) -> Any:
        module, name = entry
        return getattr(importlib.import_module(f"coflux.cli.{module}"), name)

    def convert(name: str, target: Any) -> Any:
        # A root of one command, with the real root's settings: typer builds the
        # command as it would have among the real root's (same markup, same
        # handling of exceptions), and `get_group` keeps it a group of one.
        holder = typer.Typer(**settings)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
        else:
            holder.command(name)(target)
        return typer.main.get_group(holder).commands[name]

    def build(name: str) -> Any:
        command = convert(name, attribute(commands[name]))
        for sub, entry in extra.get(name, {}).items():
            command.add_command(convert(sub, attribute(entry)), sub)
        return command

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            built = dict(self.commands)  # any registered on the root itself
            self.commands = LazyCommands(build, [*built, *commands])
            self.commands.update(built)

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)  # the names, in order: nothing built

    return LazyGroup
