"""Agent identifiers: UUIDs, unique prefixes of them, and callsigns."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Protocol

from hera.errors import HeraError, UsageError, did_you_mean

_ADJECTIVES = (
    "amber azure bold brave brisk calm clever coral crimson dapper eager fleet gentle golden "
    "hardy humble ivory jade keen lively lucid mellow merry misty nimble noble olive onyx "
    "pale placid quick quiet rapid rosy ruby rustic sable scarlet silent silver sleek snowy "
    "solar stark steady stormy sunny swift tawny tidy vivid wary wild wise witty young zesty "
    "dusky frosty"
).split()
_NOUNS = (
    "badger beacon bison cedar comet condor coyote crane cricket falcon ferret finch fox "
    "gecko heron hornet ibis jackal jaguar kestrel koala lark lemur lynx magpie marten "
    "merlin mink moose newt ocelot orca osprey otter owl panda pelican petrel puffin quail "
    "raven robin salmon seal shrike sparrow stork swift tapir tern thrush viper walrus "
    "weasel wren yak zebra"
).split()


class Identified(Protocol):
    """Anything with an id and a callsign (an agent header)."""

    id: str
    callsign: str


_CALLSIGN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_canonical_id(text: str) -> bool:
    """Whether ``text`` is a UUID in its canonical lowercase form (ids name
    files, so nothing else may pass)."""
    try:
        return str(uuid.UUID(text)) == text
    except (ValueError, TypeError, AttributeError):
        return False


def is_valid_callsign(text: str) -> bool:
    """Letters, digits, ``.``, ``_`` and ``-``, at most 64, not starting
    with punctuation."""
    return isinstance(text, str) and _CALLSIGN.fullmatch(text) is not None


def check_callsign(text: str) -> str:
    """``text`` if it is a valid callsign, else a usage error."""
    if not is_valid_callsign(text):
        raise UsageError(f"not a valid callsign: {text!r} (letters, digits, '.', '_', '-'; "
                         "at most 64; starting with a letter or digit)")
    return text


def new_id() -> str:
    """A fresh random agent id."""
    return str(uuid.uuid4())


def callsign_for(agent_id: str) -> str:
    """The default callsign of an id: two words picked by its bits."""
    value = uuid.UUID(agent_id).int
    return f"{_ADJECTIVES[value % len(_ADJECTIVES)]}-{_NOUNS[(value >> 16) % len(_NOUNS)]}"


def normalise_prefix(text: str) -> str:
    """An id or id prefix as lowercase hex without dashes."""
    compact = text.strip().lower().replace("-", "")
    if not compact or any(c not in "0123456789abcdef" for c in compact):
        raise UsageError(f"not a UUID or UUID prefix: {text!r}")
    if len(compact) > 32:
        raise UsageError(f"too long for a UUID: {text!r}")
    return compact


def resolve(candidates: Sequence[Identified], ident: str | None = None,
            callsign: str | None = None, where: str = "") -> Identified:
    """The one agent matching an id prefix or a callsign.

    :raises HeraError: nothing matches, or several do (they are listed).
    """
    place = f" {where}" if where else ""
    if ident is not None:
        prefix = normalise_prefix(ident)
        found = [c for c in candidates if c.id.replace("-", "").startswith(prefix)]
        what = f"id {ident!r}"
    elif callsign is not None:
        found = [c for c in candidates if c.callsign == callsign]
        what = f"callsign {callsign!r}"
        if not found:
            place += did_you_mean(callsign, [c.callsign for c in candidates])
    else:  # pragma: no cover - callers check
        raise UsageError("give an id (--uuid) or a callsign (--callsign)")
    if not found:
        raise HeraError(f"no agent with {what}{place}")
    if len(found) > 1:
        listed = ", ".join(f"{c.id} ({c.callsign})" for c in found)
        raise HeraError(f"{what} is ambiguous{place}; candidates: {listed}")
    return found[0]
