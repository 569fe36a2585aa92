"""hera: build, run and manage continuously learning spiking agents.

The core never imports torch or triton at module level, so listing commands
start fast; families and the runner import them when they need them.
"""

__version__ = "0.1.0"
