"""Where hera keeps things, each overridable by an environment variable.

=====================  ==========================================  =====================
what                   default (Linux)                             override
=====================  ==========================================  =====================
this user's agents     ``~/.local/share/hera/agents``              ``HERA_DATA_DIR``
system agents          ``/var/lib/hera/agents``                    ``HERA_SYSTEM_DIR``
another user's agents  that user's ``~/.local/share/hera/agents``  ``HERA_USERS_DIR``
pid/lock files         ``$XDG_RUNTIME_DIR/hera`` or ``/tmp/hera-UID``  ``HERA_RUNTIME_DIR``
user configuration     ``~/.herarc``                               ``HERA_RC``
=====================  ==========================================  =====================

An agent's file in the data directory is its only copy while it lives, so it
is kept under a *data* directory, never a cache directory that cleaners
empty. ``HERA_DATA_DIR`` etc. name the directory that holds ``agents/``.
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from hera.errors import HeraError

APP = "hera"


@dataclass(frozen=True)
class Scope:
    """Whose agents: ``user`` (the caller), ``system``, or ``user:NAME``."""

    kind: str  # "user", "system" or "other"
    user: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "other":
            return f"user:{self.user}"
        return self.kind

    def owner(self) -> tuple[int, int] | None:
        """``(uid, gid)`` of the user whose agents these are, for scope
        ``other`` when that user exists on this host; else ``None``."""
        if self.kind != "other":
            return None
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    @classmethod
    def of(cls, system: bool = False, user: str | None = None) -> "Scope":
        """The scope named by ``--system`` / ``--user NAME`` options."""
        if system and user:
            from hera.errors import UsageError

            raise UsageError("--system and --user cannot be used together")
        if system:
            return cls("system")
        if user and user != current_user():
            return cls("other", user)
        return cls("user")


def current_user() -> str:
    """The name of the user running hera."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # pragma: no cover - uid without passwd entry (containers)
        return str(os.getuid())


def data_dir(scope: Scope) -> Path:
    """The directory holding ``agents/`` for ``scope``."""
    if scope.kind == "system":
        override = os.environ.get("HERA_SYSTEM_DIR")
        if override:
            return Path(override)
        if sys.platform.startswith("linux"):
            return Path("/var/lib") / APP
        import platformdirs

        return Path(platformdirs.site_data_dir(APP))
    if scope.kind == "other":
        override = os.environ.get("HERA_USERS_DIR")
        if override:
            return Path(override) / scope.user
        try:
            home = Path(pwd.getpwnam(scope.user).pw_dir)
        except KeyError:
            raise HeraError(f"no such user: {scope.user}") from None
        return home / ".local" / "share" / APP
    override = os.environ.get("HERA_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def agents_dir(scope: Scope) -> Path:
    """Where the agent files of ``scope`` live."""
    return data_dir(scope) / "agents"


def runtime_dir() -> Path:
    """Where pid/lock files of running agents live (private to the user)."""
    override = os.environ.get("HERA_RUNTIME_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / APP
    import tempfile

    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def scope_runtime_dir(scope: Scope) -> Path:
    """Runtime dir for the agents of ``scope``: pid files of system agents
    and other users' agents live beside their data so every user of them
    sees the same locks."""
    if scope.kind == "user":
        return runtime_dir()
    return data_dir(scope) / "run"


def user_config_file() -> Path:
    """``~/.herarc`` (TOML)."""
    override = os.environ.get("HERA_RC")
    if override:
        return Path(override)
    return Path.home() / ".herarc"


def project_config_file() -> Path:
    """``./hera.json`` in the working directory."""
    return Path.cwd() / "hera.json"


def ensure_private_dir(path: Path, owner: tuple[int, int] | None = None,
                       must_own: bool = False) -> Path:
    """Create ``path`` and its missing parents (mode 0700) or fail with one line.

    :param owner: ``(uid, gid)`` to hand the directories it creates to (root
        installing for another user), so that user can use them.
    :param must_own: refuse a directory that another user owns or can write
        to, e.g. a runtime dir under /tmp that someone created first.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if owner is not None:
            for created in missing:
                os.chown(created, *owner)
        info = path.stat()
    except PermissionError:
        raise HeraError(f"cannot create {path}: permission denied") from None
    except OSError as exc:
        raise HeraError(f"cannot create {path}: {exc.strerror}") from None
    if must_own and (info.st_uid != os.geteuid() or info.st_mode & 0o022):
        raise HeraError(f"{path} belongs to uid {info.st_uid} or is writable by others; "
                        "refusing to keep agents' locks there (set HERA_RUNTIME_DIR)")
    return path


def all_user_scopes() -> list[Scope]:
    """Every user whose agent directory exists (for ``agents --all``)."""
    scopes = []
    override = os.environ.get("HERA_USERS_DIR")
    if override:
        root = Path(override)
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        names = sorted({entry.pw_name for entry in pwd.getpwall()})
    me = current_user()
    for name in names:
        scope = Scope("user") if name == me else Scope("other", name)
        try:
            if agents_dir(scope).is_dir():
                scopes.append(scope)
        except (HeraError, OSError):
            continue
    if Scope("user") not in scopes:
        scopes.insert(0, Scope("user"))
    return scopes
