"""Finding and loading plugins: entry points and ``hera_family_*`` packages
in the working directory.

Order (after tox): names blocked by ``HERA_DISABLE_PLUGINS`` (comma
separated) → the ``hera.families`` and ``hera.plugins`` entry points → a
``hera_family_<name>`` package in the working directory (a git clone), which
replaces an installed family of the same name → ``check_pending()`` so a
misspelt hook implementation fails loudly.
"""

from __future__ import annotations

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

from hera.errors import HeraError, did_you_mean
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
        families = self.families()
        matches = [(info, plugin) for info, plugin, _ in families if info.name == name]
        if len(matches) == 1:
            return matches[0][0]
        if matches:
            raise HeraError(f"family {name!r} is provided by {len(matches)} plugins "
                            f"({', '.join(sorted(p for _, p in matches))}): uninstall one, or "
                            f"block it with HERA_DISABLE_PLUGINS=NAME")
        known = ", ".join(info.name for info, _, _ in families) or "none installed"
        names = [info.name for info, _, _ in families]
        raise HeraError(f"unknown family {name!r} (installed: {known}){did_you_mean(name, names)}")

    def layouts(self, family: str) -> list[Any]:
        """The layouts of ``family``; a plugin whose ``hera_layouts`` raises is
        named in a warning, and this family then has none."""
        try:
            return list(self.family_caller("hera_layouts", family)(family=family) or [])
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the rest
            self.warn_once(f"the layouts of family {family!r} cannot be listed: hera_layouts "
                           f"raised {type(exc).__name__}: {exc}")
            return []

    def warn_once(self, message: str) -> None:
        """A warning on stderr, the first time it comes up in this process."""
        if message not in self._warned:
            self._warned.add(message)
            _warn(message)

    def family_caller(self, hook_name: str, family: str) -> Callable[..., Any]:
        """A way to call hook ``hook_name`` for ``family``'s agents, taking
        the hook's keyword arguments.

        pluggy's dispatch costs a few microseconds a call, which a program
        that steps or feeds an agent one step at a time pays on every step.
        So when only families implement the hook, none of them as a wrapper,
        this is ``family``'s own implementation (the others would answer
        ``None`` for its agents); when any other plugin implements or wraps
        it, it is the hook, called through pluggy as usual.
        """
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        families = {name: info.name for info, name, _ in self.families()}
        own = [impl for impl in impls if families.get(impl.plugin_name) == family]
        if len(own) != 1 or any(impl.hookwrapper or impl.wrapper
                                or impl.plugin_name not in families for impl in impls):
            return caller
        impl = own[0]
        if set(impl.argnames) == set(caller.spec.argnames):
            return impl.function
        wanted = impl.argnames  # it declares only some of the hook's arguments
        return lambda **given: impl.function(**{name: given[name] for name in wanted})

    def hooks_of(self, name: str) -> list[str]:
        """Names of the hera hooks plugin ``name`` implements."""
        plugin = self.manager.get_plugin(name)
        return sorted(
            caller.name for caller in self.manager.get_hookcallers(plugin) or []
        )


def create_manager() -> Plugins:
    """An empty manager with hera's hook specs (tests register what they need)."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(specs)
    return Plugins(manager)


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
