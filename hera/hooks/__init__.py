"""hera's plugin API: the hook specifications and their markers.

Family authors import from :mod:`hera.family`, which holds ``hookimpl``,
the types and the errors in one place::

    from hera.family import FamilyInfo, hookimpl

    @hookimpl
    def hera_family():
        return FamilyInfo(name="mine", version="1.0")
"""

import pluggy

PROJECT_NAME = "hera"

#: Marks a function as an implementation of one of hera's hooks.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
#: Marks a function as a hook specification (hera's own use).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

from hera.hooks.types import (  # noqa: E402  (after the markers on purpose)
    Built,
    DynamicState,
    FamilyInfo,
    LayoutInfo,
    LoadedAgent,
    ResourceReport,
    Snapshot,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "Built",
    "DynamicState",
    "FamilyInfo",
    "LayoutInfo",
    "LoadedAgent",
    "ResourceReport",
    "Snapshot",
]
