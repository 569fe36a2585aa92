"""hera: build, run and manage continuously learning spiking agents.

The core never imports torch or triton at module level, so listing commands
start fast; families and the runner import them when they need them.
"""

__version__ = "0.1.0"

#: The Python API (hera.api), imported on first use: ``import hera`` stays light.
_API = ("build", "up", "attach", "plot", "Agent", "RemoteAgent", "AgentDown")
__all__ = [*_API, "HeraError"]


def __getattr__(name: str):
    if name in _API:
        from hera import api

        return getattr(api, name)
    if name == "HeraError":
        from hera.errors import HeraError

        return HeraError
    raise AttributeError(f"module 'hera' has no attribute {name!r}")
