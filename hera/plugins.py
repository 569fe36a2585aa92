"""Finding and loading plugins: entry points and ``hera_family_*`` packages
in the working directory.

Order (after tox): names blocked by ``HERA_DISABLE_PLUGINS`` (comma
separated) → the ``hera.families`` and ``hera.plugins`` entry points → a
``hera_family_<name>`` package in the working directory (a git clone), which
replaces an installed family of the same name → ``check_pending()`` so a
misspelt hook implementation fails loudly.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pluggy

from hera import agent_protocol
from hera.errors import HeraError, UsageError, did_you_mean
from hera.hooks import PROJECT_NAME, specs
from hera.hooks.types import FamilyInfo

ENTRY_POINT_GROUPS = ("hera.families", "hera.plugins")
WORKDIR_PREFIX = "hera_family_"


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin was found, for ``hera families``."""

    kind: str  # "entry point", "working directory", "registered"
    location: str
    distribution: str = ""


class Plugins:
    """hera's pluggy manager plus where each plugin came from."""

    def __init__(self, manager: pluggy.PluginManager):
        self.manager = manager
        self.sources: dict[str, PluginSource] = {}
        self._warned: set[str] = set()

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def register(self, plugin: object, name: str, source: PluginSource | None = None) -> None:
        """Register a plugin object or module under ``name``; a hook
        implementation whose arguments do not match its spec is refused
        with one line naming the plugin."""
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise HeraError(f"plugin {name!r} is broken: {' '.join(str(exc).split())}") from None
        self.sources[name] = source or PluginSource("registered", repr(plugin))

    def families(self) -> list[tuple[FamilyInfo, str, PluginSource]]:
        """Every family: its info, plugin name and source, sorted by name.

        Each plugin's ``hera_family`` is called on its own: one that raises
        is named in a warning and left out, and the others are listed."""
        found = []
        for impl in self.hook.hera_family.get_hookimpls():
            name = impl.plugin_name
            try:
                info = impl.function()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the rest
                self.warn_once(f"plugin {name!r} is broken and left out: its hera_family "
                               f"raised {type(exc).__name__}: {exc}")
                continue
            if isinstance(info, FamilyInfo):
                found.append((info, name, self.sources.get(name, PluginSource("registered", name))))
        claimed: dict[str, list[str]] = {}
        for info, name, _ in found:
            claimed.setdefault(info.name, []).append(name)
        for family, names in claimed.items():
            if len(names) > 1:
                self.warn_once(f"family {family!r} is provided by {len(names)} plugins "
                               f"({', '.join(sorted(names))}); it cannot be used until one is "
                               "uninstalled or blocked with HERA_DISABLE_PLUGINS")
        return sorted(found, key=lambda item: (item[0].name, item[1]))

    def family(self, name: str) -> FamilyInfo:
        """The installed family called ``name``, or a clear error (also
        when two plugins claim the name: whose agents would they be?)."""
        return self._claim(name)[0]

    def _claim(self, name: str) -> tuple[FamilyInfo, str]:
        """The family called ``name`` and the plugin that provides it (see
        :meth:`family`)."""
        families = self.families()
        matches = [(info, plugin) for info, plugin, _ in families if info.name == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise HeraError(f"family {name!r} is provided by {len(matches)} plugins "
                            f"({', '.join(sorted(p for _, p in matches))}): uninstall one, or "
                            f"block it with HERA_DISABLE_PLUGINS=NAME")
        known = ", ".join(info.name for info, _, _ in families) or "none installed"
        names = [info.name for info, _, _ in families]
        raise HeraError(f"unknown family {name!r} (installed: {known}){did_you_mean(name, names)}")

    def family_to_build(self, family: str | None) -> str:
        """``family``, or where none is given or configured, the one
        installed family; with several there is no silent default.

        :raises UsageError: several families are installed and none was named.
        :raises HeraError: none is installed.
        """
        if family is not None:
            return family
        names = sorted({info.name for info, _, _ in self.families()})
        if len(names) == 1:
            return names[0]
        if not names:
            raise HeraError("no family is installed (hera families lists them)")
        raise UsageError(f"which family? {len(names)} are installed ({', '.join(names)}): give "
                         "--family NAME, or set family in the [options] of ~/.herarc or "
                         "./hera.json")

    def layouts(self, family: str) -> list[Any]:
        """The layouts of ``family``; a plugin whose ``hera_layouts`` raises is
        named in a warning, and this family then has none."""
        try:
            return list(self.family_hooks(family).hera_layouts() or [])
        except HeraError:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the rest
            self.warn_once(f"the layouts of family {family!r} cannot be listed: hera_layouts "
                           f"raised {type(exc).__name__}: {exc}")
            return []

    def warn_once(self, message: str) -> None:
        """A warning on stderr, the first time it comes up in this process."""
        if message not in self._warned:
            self._warned.add(message)
            _warn(message)

    def owner(self, family: str) -> str:
        """The name of the one plugin that provides ``family``.

        :raises HeraError: no plugin, or several, provide it (as
            :meth:`family` says).
        """
        return self._claim(family)[1]

    def family_hooks(self, family: str) -> "FamilyHooks":
        """The hooks of ``family``'s agents, routed by hera: see
        :class:`FamilyHooks`.

        :raises HeraError: ``family`` is not installed, or two plugins
            claim it.
        """
        owner = self.owner(family)
        self._warn_old_style(family, owner)
        return FamilyHooks(self, family, owner, {name for _, name, _ in self.families()})

    def routed(self, hook_name: str, family: str, owner: str,
               families: set[str]) -> Callable[..., Any]:
        """A way to call hook ``hook_name`` for ``family``'s agents, taking
        the hook's keyword arguments except ``family``, which it supplies
        (``families``: the plugin names of every family).

        Only ``owner``'s implementation answers among the families (the
        others' are left out of the call, as pluggy's
        ``subset_hook_caller`` does); every plugin that is not a family, a
        recorder's wrapper say, still sees the call. Where the family does
        not implement a running hook, the agent's own method answers
        (:mod:`hera.agent_protocol`). When no plugin but families
        implements the hook, this is the family's own function, called
        straight: pluggy's dispatch costs a few microseconds, which a
        program stepping an agent one step at a time would pay each step.
        """
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        own = [impl for impl in impls if impl.plugin_name == owner]
        protocol = [impl for impl in impls if impl.plugin_name == agent_protocol.NAME]
        others = [impl for impl in impls
                  if impl.plugin_name not in families and impl.plugin_name != agent_protocol.NAME]
        if not others and len(own) <= 1 and not any(i.hookwrapper or i.wrapper for i in own):
            last = own or protocol  # the family's own, else the agent's method
            return _direct(last[0], family, tuple(caller.spec.argnames)) if last else _no_answer
        # every other family's plugin is left out of the call
        away = [self.manager.get_plugin(name) for name in families - {owner}]
        subset = self.manager.subset_hook_caller(hook_name, [p for p in away if p is not None])
        return functools.partial(subset, family=family)

    def _warn_old_style(self, family: str, owner: str) -> None:
        """Name, once, a family written for the 0.1 hooks: its hooks take a
        ``family`` argument to check, which hera's routing made needless."""
        old = [name for name in self.hooks_of(owner) if name != "hera_family"
               and any("family" in impl.argnames and impl.plugin_name == owner
                       for impl in getattr(self.hook, name).get_hookimpls())]
        if old:
            self.warn_once(
                f"family {family!r} (plugin {owner!r}) is written for hera 0.1's hooks: hera now "
                f"calls only a family's own hooks, so drop the 'family' argument and its check "
                f"from {', '.join(old)} (see docs/writing-a-family.md, 'How hooks are "
                f"called'); the 0.1 form keeps working until hera 0.3")

    def hooks_of(self, name: str) -> list[str]:
        """Names of the hera hooks plugin ``name`` implements."""
        plugin = self.manager.get_plugin(name)
        return sorted(
            caller.name for caller in self.manager.get_hookcallers(plugin) or []
        )


class FamilyHooks:
    """One family's hooks: ``hooks.hera_step(agent=handle, steps=10)``
    calls the family's own ``hera_step`` (with ``family`` filled in for the
    plugins that declare it), and nobody else's among the families.

    Got from :meth:`Plugins.family_hooks`; each hook is looked up once, on
    first use, so keep the object while the agent lives.
    """

    def __init__(self, plugins: Plugins, family: str, owner: str, families: set[str]):
        self.family = family
        self.plugin = owner
        self._plugins = plugins
        self._families = families

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not name.startswith("hera_") or not hasattr(specs, name):
            raise AttributeError(f"hera has no hook {name!r}")
        caller = self._plugins.routed(name, self.family, self.plugin, self._families)
        setattr(self, name, caller)
        return caller


def _direct(impl: Any, family: str, spec_args: tuple[str, ...]) -> Callable[..., Any]:
    """``impl``'s function, taking the hook's keyword arguments but
    ``family``: the function itself when it declares exactly those."""
    wanted = tuple(impl.argnames)
    if set(wanted) == set(spec_args) - {"family"}:
        return impl.function
    return lambda **given: impl.function(**{name: family if name == "family" else given[name]
                                            for name in wanted})


def _no_answer(**_given: Any) -> None:
    """A hook the family does not implement: no answer, as pluggy gives."""
    return None


def create_manager() -> Plugins:
    """An empty manager with hera's hook specs (tests register what they need)."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(specs)
    plugins = Plugins(manager)
    plugins.register(agent_protocol.AgentProtocol(), agent_protocol.NAME,
                     PluginSource("hera", "hera.agent_protocol"))
    return plugins


def load_plugins(workdir: Path | None = None) -> Plugins:
    """Everything installed and everything cloned into ``workdir``."""
    plugins = create_manager()
    blocked = {n.strip() for n in os.environ.get("HERA_DISABLE_PLUGINS", "").split(",") if n.strip()}
    for name in blocked:
        plugins.manager.set_blocked(name)
    local = _workdir_packages(Path.cwd() if workdir is None else workdir)
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            if ep.name in local and _installed_location(ep.module) == str(local[ep.name]):
                del local[ep.name]  # the working directory is the installed package's home
            if ep.name in blocked or ep.name in local or plugins.manager.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break hera
                _warn(f"cannot load plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}")
                continue
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ""
            plugins.register(module, ep.name, PluginSource("entry point", _module_location(module), dist))
    for name, path in sorted(local.items()):
        if name in blocked:
            continue
        module = _import_workdir_package(name, path)
        if module is not None:
            plugins.register(module, name, PluginSource("working directory", str(path)))
    check_hooks(plugins)
    return plugins


def check_hooks(plugins: Plugins) -> None:
    """Fail loudly, naming the plugin, when one implements a hook hera does
    not define (usually a misspelt ``hera_*`` name)."""
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = plugins.manager.get_name(exc.plugin) or repr(exc.plugin)
        known = ", ".join(sorted(n for n in dir(specs) if n.startswith("hera_")))
        raise HeraError(f"plugin {name!r} is broken: {' '.join(str(exc).split())} "
                        f"(hera's hooks: {known})") from None


def _workdir_packages(workdir: Path) -> dict[str, Path]:
    """``hera_family_<name>`` packages in ``workdir``: either the package
    itself or a cloned repository holding it one level down."""
    found: dict[str, Path] = {}
    try:
        children = sorted(workdir.glob(f"{WORKDIR_PREFIX}*"))
    except OSError:
        return found
    for child in children:
        name = child.name[len(WORKDIR_PREFIX):]
        if not name.isidentifier():
            continue
        for package in (child, child / child.name, child / "src" / child.name):
            if (package / "__init__.py").is_file():
                found[name] = package
                break
    return found


def _import_workdir_package(name: str, package: Path) -> ModuleType | None:
    module_name = WORKDIR_PREFIX + name
    existing = sys.modules.get(module_name)
    if existing is not None and _module_location(existing) == str(package):
        return existing
    spec = importlib.util.spec_from_file_location(
        module_name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        _warn(f"cannot load family {name!r} from {package}: {type(exc).__name__}: {exc}")
        return None
    return module


def _installed_location(module_name: str) -> str:
    """Where an importable module lives, without running it."""
    try:
        spec = importlib.util.find_spec(module_name.split(".")[0])
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin:
        return ""
    path = Path(spec.origin)
    return str(path.parent if path.name == "__init__.py" else path)


def _module_location(module: ModuleType) -> str:
    location = getattr(module, "__file__", None) or ""
    path = Path(location)
    return str(path.parent if path.name == "__init__.py" else path)


def _warn(message: str) -> None:
    print(f"hera: warning: {message}", file=sys.stderr)
