"""Shell completion with argcomplete: commands and options, and the names
hera knows: installed agents' ids and callsigns, families, layouts, signals.

Turn it on once in bash or zsh (see docs/commands.md)::

    eval "$(register-python-argcomplete hera)"

Imported only when the shell asks (``_ARGCOMPLETE`` is set), so ``hera``
starts as fast as ever otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterable


def complete(parser: argparse.ArgumentParser) -> None:
    """Attach hera's completers to ``parser``'s options and answer the
    shell (argcomplete exits the process once it has)."""
    import argcomplete

    for command, action in _actions(parser):
        completer = COMPLETERS.get((command, action.dest)) or COMPLETERS.get((None, action.dest))
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


def _actions(parser: argparse.ArgumentParser, command: str | None = None
             ) -> Iterable[tuple[str | None, argparse.Action]]:
    """Every action of ``parser`` and of its subcommands' parsers, with the
    subcommand it belongs to (``None``: the top level)."""
    for action in parser._actions:
        yield command, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, name)


def _quietly(names: Callable[[argparse.Namespace], Iterable[str]]) -> Callable[..., list[str]]:
    """A completer that offers nothing, rather than a traceback, when the
    store or a plugin cannot be read."""
    def completer(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
        try:
            return sorted(n for n in names(parsed_args) if n.startswith(prefix))
        except Exception:  # noqa: BLE001 - a completion must never break the shell
            return []
    return completer


def _store(args: argparse.Namespace) -> Any:
    from hera import places
    from hera.store import AgentStore

    return AgentStore(places.Scope.of(bool(getattr(args, "system", False)),
                                      getattr(args, "user", None)))


def _ids(args: argparse.Namespace) -> Iterable[str]:
    return (header.id for header in _store(args).headers())


def _callsigns(args: argparse.Namespace) -> Iterable[str]:
    return (header.callsign for header in _store(args).headers())


def _families(args: argparse.Namespace) -> Iterable[str]:
    from hera.plugins import load_plugins

    return (info.name for info, _, _ in load_plugins().families())


def _layouts(args: argparse.Namespace) -> Iterable[str]:
    from hera.plugins import load_plugins

    plugins = load_plugins()
    named = getattr(args, "family", None)
    families = [named] if named else [info.name for info, _, _ in plugins.families()]
    return (layout.name for family in families for layout in plugins.layouts(family))


def _signals(args: argparse.Namespace) -> Iterable[str]:
    from hera.signals import MEANINGS, OTHER_MEANINGS

    return [*MEANINGS, *OTHER_MEANINGS]


#: Completers by (subcommand or ``None`` for any, ``dest`` of the option or
#: argument they fill).
COMPLETERS: dict[tuple[str | None, str], Callable[..., list[str]]] = {
    (None, "uuid"): _quietly(_ids),
    (None, "callsign"): _quietly(_callsigns),
    (None, "family"): _quietly(_families),
    (None, "layout"): _quietly(_layouts),
    ("signal", "name"): _quietly(_signals),
}
