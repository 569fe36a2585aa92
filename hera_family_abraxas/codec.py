"""Lines of text to input-channel values and output counts to a line (no torch)."""

from __future__ import annotations


def line_to_values(line: str) -> list[float]:
    """A line of numbers (space or comma separated) is taken as channel
    values in [0, 1]; any other text is encoded byte by byte (byte / 255)."""
    fields = line.replace(",", " ").split()
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        numbers = None
    if numbers is not None and fields:
        return [min(1.0, max(0.0, n)) if n == n else 0.0 for n in numbers]
    return [b / 255.0 for b in line.encode("utf-8")]


#: The lines that freeze and thaw all adaptation, and what they set.
FREEZE = {"freeze": True, "unfreeze": False}


def spike_channels(line: str) -> list[int] | None:
    """The channels of a ``spikes C1 C2 ...`` line (none: ``spikes`` alone),
    or None for any other line.

    :raises HeraError: for a field that is not a whole number.
    """
    fields = line.replace(",", " ").split()
    if not fields or fields[0].lower() != "spikes":
        return None
    try:
        return [int(field) for field in fields[1:]]
    except ValueError:
        from hera.errors import HeraError

        bad = next(f for f in fields[1:] if not f.lstrip("+-").isdigit())
        raise HeraError(f"a spikes line takes channel numbers, not {bad!r}") from None


def reward_level(line: str) -> float | None:
    """The level of a ``reward X`` line (any number, checked by the sheet),
    or None for any other line."""
    fields = line.split()
    if len(fields) == 2 and fields[0].lower() == "reward":
        try:
            return float(fields[1])
        except ValueError:
            return None
    return None


def counts_to_line(counts: list[int]) -> str:
    """Output spike counts as one line of whole numbers."""
    return " ".join(str(c) for c in counts)
