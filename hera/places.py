"""Where hera keeps things, each overridable by an environment variable.

=====================  ==========================================  =====================
what                   default (Linux)                             override
=====================  ==========================================  =====================
this user's agents     ``~/.local/share/hera/agents``              ``HERA_DATA_DIR``
system agents          ``/var/lib/hera/agents``                    ``HERA_SYSTEM_DIR``
another user's agents  that user's ``~/.local/share/hera/agents``  ``HERA_USERS_DIR``
pid/lock files         ``$XDG_RUNTIME_DIR/hera`` or ``/tmp/hera-UID``  ``HERA_RUNTIME_DIR``
user configuration     ``~/.herarc``                               ``HERA_RC``
rebuildable files      ``~/.cache/hera`` (compiled steps)          ``HERA_CACHE_DIR``
=====================  ==========================================  =====================

An agent's file in the data directory is its only copy while it lives, so it
is kept under a *data* directory, never a cache directory that cleaners
empty. ``HERA_DATA_DIR`` etc. name the directory that holds ``agents/``.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from hera.errors import HeraError

APP = "hera"

# A user name as useradd accepts it: nothing that could step out of a
# directory ("..", "/") or be taken for an option.
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")


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
        if user is not None and not _USER_NAME.fullmatch(user):
            from hera.errors import UsageError

            raise UsageError(f"--user takes a user name, not {user!r}")
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


def cache_dir() -> Path:
    """Where this user keeps what can be made again (a family's compiled
    step): nothing there is ever an agent's only copy of anything."""
    override = os.environ.get("HERA_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def user_config_file() -> Path:
    """``~/.herarc`` (TOML)."""
    override = os.environ.get("HERA_RC")
    if override:
        return Path(override)
    return Path.home() / ".herarc"


def project_config_file() -> Path:
    """``./hera.json`` in the working directory."""
    return Path.cwd() / "hera.json"


def ensure_private_dir(path: Path, must_own: bool = False,
                       keeping: str = "agents' locks", override: str = "HERA_RUNTIME_DIR") -> Path:
    """Create ``path`` and its missing parents, each mode 0700 whatever the
    umask, or fail with one line.

    :param must_own: refuse a directory that is a symbolic link, belongs to
        another user or that others can write to: a runtime dir under /tmp
        that someone else made first (or pointed at a directory of ours).
    :param keeping: what the directory is for, and ``override`` the variable
        that moves it, both for the refusal's message.
    """
    try:
        _make_dirs(path, 0o700)
        info = os.lstat(path)
    except PermissionError:
        raise HeraError(f"cannot create {path}: permission denied") from None
    except OSError as exc:
        raise HeraError(f"cannot create {path}: {exc.strerror}") from None
    if must_own:
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise HeraError(f"{path} is not a directory of its own (a symbolic link?); "
                            f"refusing to keep {keeping} there (set {override})")
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise HeraError(f"{path} belongs to uid {info.st_uid} or is writable by others; "
                            f"refusing to keep {keeping} there (set {override})")
    return path


def _make_dirs(path: Path, mode: int) -> None:
    """``mkdir -p`` that gives every directory it creates ``mode`` exactly
    (``Path.mkdir(parents=True)`` leaves parents at 0777 less the umask)."""
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made by someone else meanwhile: checked by the caller
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off
        finally:
            os.close(fd)
    if not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))


def prepare_user_base(base: Path, owner: tuple[int, int]) -> None:
    """Root's part of making another user's data directory ``base``.

    Directories above ``base`` that root has to create stay root's, mode
    0711: the user can pass through to its own directory but can neither
    list nor rename the other users' (a users directory handed to the
    first user installed for would let that user hide everyone else's
    agents). ``base`` itself, if root has to create it, is made 0700 and
    given to the user through its descriptor. Whatever exists above
    ``base`` must belong to root or to the user and be writable by no one
    else (a world-writable directory with the sticky bit, like /tmp,
    excepted), as OpenSSH asks of the path to a user's files.

    Everything below ``base`` is made by the user's own identity (see
    :mod:`hera.privilege`), never by root.
    """
    uid, gid = owner
    try:
        existing = next(p for p in (base, *base.parents) if os.path.lexists(p))
        if existing == base:
            _check_owned_by(base, {uid}, "the agents of this user")
        for ancestor in (existing if existing != base else base.parent, *existing.parents):
            _check_owned_by(ancestor, {0, uid}, "other users' agents", sticky_ok=True)
        if existing != base and os.stat(existing).st_uid == uid:
            return  # inside the user's own tree (a home directory): the user makes the rest
        _make_dirs(base.parent, 0o711)
        # All again, not only those made here: another user may have made
        # one of them between the check above and the mkdir.
        for ancestor in base.parents:
            _check_owned_by(ancestor, {0, uid}, "other users' agents", sticky_ok=True)
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            _check_owned_by(base, {uid}, "the agents of this user")
            return
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    except PermissionError:
        raise HeraError(f"cannot create {base}: permission denied") from None
    except OSError as exc:
        raise HeraError(f"cannot create {base}: {exc.strerror}") from None


def _check_owned_by(path: Path, uids: set[int], what: str, sticky_ok: bool = False) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        # A link that root made (e.g. /var/run) is as safe as its owner.
        if info.st_uid != 0:
            raise HeraError(f"{path} is a symbolic link of uid {info.st_uid}; "
                            f"refusing to keep {what} behind it")
        info = os.stat(path)
    writable_by_others = info.st_mode & 0o022
    if sticky_ok and info.st_mode & stat.S_ISVTX and info.st_uid == 0:
        writable_by_others = 0
    if info.st_uid not in uids or writable_by_others:
        raise HeraError(f"{path} belongs to uid {info.st_uid} or is writable by others; "
                        f"refusing to keep {what} there")


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
