"""abraxas layouts and the definition they expand to (no torch here).

A definition is the complete, JSON-valued description of an instance: the
geometry (grid of columns, layers, cells, input channels, dendrite and axon
lengths) and the dynamics constants. Layouts are named definitions; the
configuration files and ``build --set`` override single parameters.
"""

from __future__ import annotations

from typing import Any

from hera.errors import DefinitionError, did_you_mean

#: Parameters every definition has, with their defaults (the ``example`` layout).
DEFAULTS: dict[str, Any] = {
    # geometry
    "width": 3,          # columns along x
    "height": 3,         # columns along y
    "depth": 2,          # layers per column; the last one is the output area
    "cells": 6,          # neurons per layer of a column
    "inputs": 16,        # input channels (the input area)
    "dendrite": 1,       # receptive-field reach, in columns (Chebyshev distance)
    "axon": 3,           # longest conduction delay, in steps
    # dynamics (one step = 1 ms)
    "tau_membrane": 20.0,
    "threshold": 1.0,
    "refractory": 2,
    "noise": 0.35,        # std of the intrinsic noise current: lets a zero instance fire
    "input_rate": 0.05,   # spike probability per step of an idle input channel
    "max_rate": 0.5,      # spike probability per step of a fully driven input channel
    # plasticity
    "tau_trace": 20.0,      # decay of the pre traces, which set potentiation
    "tau_depression": 0.0,  # decay of the post traces, which set depression (0: tau_trace)
    "a_plus": 0.01,
    "a_minus": 0.008,
    # potentiation by (pre trace - trace_offset): a source quieter than this
    # before a spike is depressed (Diehl & Cook's x_tar; 0: the whole trace)
    "trace_offset": 0.0,
    "w_max": 1.0,
    "w_budget": 4.0,      # synaptic scaling: a neuron's incoming weights sum to at most this (0: off)
    "theta_plus": 0.05,   # threshold rise per spike (homeostasis)
    "tau_theta": 1000.0,
    "target_rate": 0.0,   # spikes per neuron per step the thresholds draw rates to (0: off)
    "min_threshold": 0.0,  # the lowest a target rate may take a threshold (at most threshold)
    "initial_weight": 0.0,  # every input weight of a built instance (at most w_max)
}

GEOMETRY = ("width", "height", "depth", "cells", "inputs", "dendrite", "axon")
_INTEGERS = GEOMETRY + ("refractory",)
_MINIMUM = {"width": 1, "height": 1, "depth": 1, "cells": 1, "inputs": 1, "dendrite": 0,
            "axon": 1, "refractory": 0}

LAYOUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "example": ("light: for tests and a CPU", {}),
    # Rate-coded input through three layers: no depression at input spikes
    # (with rates it cancels potentiation on average) and a weight budget
    # that makes a neuron's inputs compete; thresholds drawn to a target
    # rate (slow decay: the target, not the decay, sets the rate) with a
    # strong rise per spike, which spreads the patterns over the cells.
    # Chosen on validation seeds 101-105 of benchmarks/selectivity.py.
    "small": ("an 8x8 sheet of three-layer columns",
              {"width": 8, "height": 8, "depth": 3, "cells": 12, "inputs": 64, "dendrite": 1,
               "axon": 4, "a_minus": 0.0, "w_budget": 6.0, "theta_plus": 0.2,
               "tau_theta": 1000000.0, "target_rate": 0.02}),
    # One column of 100 cells: a single winner-take-all group, so at most
    # one cell fires a step, the one whose input weights best match the
    # input, less its adaptive threshold. A membrane time constant below a
    # step and no refractory period make the winner this step's argmax (not
    # cells taking turns through each other's refractory gaps). a_minus = 0:
    # with rate-coded input, depression at input spikes cancels
    # potentiation on average; synaptic scaling (w_budget) does the
    # forgetting. Little noise: it only has to recruit zero-weight cells.
    # theta_plus / tau_theta share the inputs out among all the cells. A
    # small learning rate against a large weight budget moves a cell's
    # weights little per digit, so classes learned earlier stay when others
    # follow (benchmarks/continual.py). Chosen on validation digits
    # (benchmarks/digits.py, benchmarks/continual.py), never on test ones.
    "digits": ("64 inputs, one winner-take-all group of 100 cells: learns 8x8 images",
               {"width": 1, "height": 1, "depth": 1, "cells": 100, "inputs": 64, "dendrite": 0,
                "axon": 1, "tau_membrane": 0.3, "threshold": 0.1, "refractory": 0,
                "noise": 0.05, "input_rate": 0.0, "max_rate": 1.0, "tau_trace": 10.0,
                "a_plus": 0.0012, "a_minus": 0.0, "w_max": 1.0, "w_budget": 16.0,
                "theta_plus": 0.03, "tau_theta": 100000.0}),
    # Three cells in one winner-take-all group listening to 500 afferents
    # for a spike-timing pattern (benchmarks/pattern.py), after Masquelier et
    # al. 2008: built with input weights of 0.228 and no noise, so that only
    # coincident input fires them; an 8.4-step membrane integrates
    # coincidences; potentiation (tau_trace 12.5) is shorter than depression
    # (tau_depression 27.7). Potentiation by the pre trace less 0.4 (about
    # 0.6 of an afferent's mean trace): afferents silent before a cell's
    # spike lose weight instead of gaining it, so a cell that fires at the
    # pattern's onset does not take up the afferents that stay silent
    # there and fire elsewhere (without it, every cell learned the pattern
    # and then lost it). A target rate just over the pattern's rate; three
    # competing cells give the pattern more than one chance. Chosen on
    # validation seeds 101-120 (random search, the number of cells, then
    # trace_offset and the learning rates), checked on fresh seeds 121-130.
    "pattern": ("500 inputs, one winner-take-all group of 3 cells: spike-timing patterns",
                {"width": 1, "height": 1, "depth": 1, "cells": 3, "inputs": 500, "dendrite": 0,
                 "axon": 1, "tau_membrane": 8.4, "threshold": 60.5, "refractory": 21,
                 "noise": 0.0, "input_rate": 0.0, "max_rate": 1.0, "tau_trace": 12.5,
                 "tau_depression": 27.7, "a_plus": 0.0072, "a_minus": 0.0037,
                 "trace_offset": 0.4, "w_max": 1.0, "w_budget": 96.0, "theta_plus": 0.34,
                 "tau_theta": 1000000.0, "target_rate": 0.0052, "initial_weight": 0.228}),
    # Named by size: abraxas implements neither the Vogels-Abbott COBA
    # network (conductances, an inhibitory population) nor the cortical
    # microcircuit, whose sizes these two have (RENAMED keeps the old
    # names working). `medium`'s recurrent weights grow as it learns; the
    # thresholds hold each neuron near 2 spikes per 1000 steps (a slow
    # decay, so that the target and not the decay sets the rate).
    "medium": ("4,000 neurons in one layer of 20x20 columns",
               {"width": 20, "height": 20, "depth": 1, "cells": 10, "inputs": 8, "dendrite": 1,
                "axon": 4, "target_rate": 0.002, "tau_theta": 1000000.0}),
    "big": ("77,440 neurons in four layers of 22x22 columns (a GPU's)",
            {"width": 22, "height": 22, "depth": 4, "cells": 40, "inputs": 256,
             "dendrite": 3, "axon": 8}),
    "large": ("295,936 neurons in four layers of 34x34 columns: fills a 64-80 GB GPU",
              {"width": 34, "height": 34, "depth": 4, "cells": 64, "inputs": 1024,
               "dendrite": 3, "axon": 8}),
}

#: Former layout names, still accepted: the models they named are not what
#: abraxas builds, only their sizes were.
RENAMED: dict[str, str] = {"coba": "medium", "microcircuit": "big"}

#: Rows the torch backend gives one call of an event op: bounds the
#: temporaries of a step in which many sources spike at once.
ROWS_AT_ONCE = 256


def definition_for(layout: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The checked definition of ``layout`` (or its former name, see
    ``RENAMED``) with ``overrides`` applied."""
    layout = RENAMED.get(layout, layout)
    if layout not in LAYOUTS:
        raise DefinitionError(f"abraxas has no layout {layout!r} (layouts: {', '.join(LAYOUTS)})"
                              + did_you_mean(layout, LAYOUTS))
    definition = dict(DEFAULTS)
    definition.update(LAYOUTS[layout][1])
    for key, value in overrides.items():
        if key not in DEFAULTS:
            raise DefinitionError(f"abraxas has no layout parameter {key!r} "
                                  f"(parameters: {', '.join(DEFAULTS)})")
        definition[key] = value
    check_definition(definition)
    return definition


def check_definition(definition: dict[str, Any]) -> None:
    """Refuse a definition with a missing, mistyped or out-of-range value."""
    for key in DEFAULTS:
        if key not in definition:
            raise DefinitionError(f"abraxas definition lacks {key!r}")
        value = definition[key]
        if key in _INTEGERS:
            if type(value) is not int or value < _MINIMUM[key]:
                raise DefinitionError(f"abraxas parameter {key!r} must be a whole number "
                                      f">= {_MINIMUM[key]}, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise DefinitionError(f"abraxas parameter {key!r} must be a non-negative number, "
                                  f"not {value!r}")
    for key in ("tau_membrane", "tau_trace", "tau_theta"):
        if definition[key] <= 0:
            raise DefinitionError(f"abraxas parameter {key!r} must be positive")
    for key in ("input_rate", "max_rate", "target_rate"):
        if definition[key] > 1:
            raise DefinitionError(f"abraxas parameter {key!r} is a probability per step (<= 1)")
    if definition["initial_weight"] > definition["w_max"]:
        raise DefinitionError("abraxas parameter 'initial_weight' is above 'w_max'")
    if definition["min_threshold"] > definition["threshold"]:
        raise DefinitionError("abraxas parameter 'min_threshold' is above 'threshold'")


def neuron_count(d: dict[str, Any]) -> int:
    """Neurons of an instance (input channels not counted)."""
    return d["width"] * d["height"] * d["depth"] * d["cells"]


def _columns_within(d: dict[str, Any]) -> int:
    """Sum over all columns of the number of columns within dendrite reach
    (itself included), clipped at the sheet's edges."""
    def reach_1d(size: int) -> int:
        return sum(min(size - 1, i + d["dendrite"]) - max(0, i - d["dendrite"]) + 1
                   for i in range(size))

    return reach_1d(d["width"]) * reach_1d(d["height"])


def synapse_count(d: dict[str, Any]) -> int:
    """Synapses that can carry weight: input → first layer, layer → next
    layer (forward), layer → layer before (feedback) and lateral within a
    layer (no self-synapses), each within dendrite reach."""
    cells, depth = d["cells"], d["depth"]
    columns = d["width"] * d["height"]
    feed_in = d["inputs"] * columns * cells
    pairs = _columns_within(d)  # ordered column pairs within reach
    forward = feedback = (depth - 1) * pairs * cells * cells
    lateral = depth * (pairs * cells * cells - columns * cells)
    return feed_in + forward + feedback + lateral


def slots_per_row(d: dict[str, Any]) -> int:
    """``K``: outgoing slots of a neuron (lateral, forward and feedback, every
    offset within dendrite reach, every cell); see ``connectivity``."""
    return 3 * (2 * d["dendrite"] + 1) ** 2 * d["cells"]


def first_layer_size(d: dict[str, Any]) -> int:
    """Neurons of the first layer: what every input channel reaches."""
    return d["width"] * d["height"] * d["cells"]


def output_size(d: dict[str, Any]) -> int:
    """Neurons of the last layer, the output area."""
    return d["width"] * d["height"] * d["cells"]


def source_count(d: dict[str, Any]) -> int:
    """Sources of spikes: input channels, then neurons (the pre traces)."""
    return d["inputs"] + neuron_count(d)


def memory_by_class(d: dict[str, Any], backend: str = "torch") -> dict[str, int]:
    """Bytes an upped instance allocates, by tensor class (see ``model``
    and ``connectivity``): every lasting tensor exactly, and a bound on the
    temporaries of one step (``backend`` is ``"torch"``, ``"triton"`` or
    ``"cpp"``). The cpp step finds synapses from the geometry: it has no
    synapse tables."""
    neurons, inputs, k = neuron_count(d), d["inputs"], slots_per_row(d)
    first, sources, j = first_layer_size(d), source_count(d), d["inputs"] + k
    input_slots = inputs * first
    classes = {"weights": (input_slots + neurons * k) * 4}              # float32
    if backend != "cpp":
        index_bytes = 8 if input_slots + neurons * k >= 2 ** 31 else 4
        classes["synapse tables"] = ((input_slots + neurons * k) * 4      # int32 targets
                                     + neurons * j * (index_bytes + 4)    # incoming
                                     + (k + first) * 4)                   # delays
    classes["delay buffers"] = (d["axon"] + 1) * neurons * 4             # int32 ring
    # membrane, refractory, thresholds, post trace, current, noise (4 B
    # each); output counts (int64); pre traces; input rates and draws; the
    # spike counter of every source (int64, for hera_activity)
    classes["neuron state"] = neurons * 24 + output_size(d) * 8 + sources * 12 + inputs * 8
    classes["step temporaries"] = _step_temporaries(d, backend)
    return classes


def _step_temporaries(d: dict[str, Any], backend: str) -> int:
    """A bound on the bytes one step of ``backend`` allocates."""
    neurons, inputs = neuron_count(d), d["inputs"]
    j = inputs + slots_per_row(d)
    if backend == "cpp":
        # spikes, margins and noise per neuron; draws and spikes per input;
        # an incoming row's places (int64) and potentiated weights
        return neurons * 12 + inputs * 8 + j * 12
    # scaled noise and spikes per neuron
    total = neurons * 16
    if backend == "torch":
        # the reference's int64 random-number temporaries; gathers of the
        # spiking rows (at most one per (column, layer) group, plus every
        # input channel, ROWS_AT_ONCE at a time)
        rows = min(ROWS_AT_ONCE, d["width"] * d["height"] * d["depth"] + inputs)
        total += max(neurons, inputs) * 40 + rows * max(j, first_layer_size(d)) * 48
    if backend == "triton":
        # the fixed-size lists of spiking rows: one per group and per
        # channel (int64), with their group maxima and winners
        total += (neurons // d["cells"] * 3 + inputs) * 8
    return total


def snapshot_bytes(d: dict[str, Any]) -> int:
    """Bytes of a snapshot (``model.Sheet.snapshot``): the learned tensors
    and the dynamic state, as a save copies them."""
    neurons, inputs = neuron_count(d), d["inputs"]
    learned = (inputs * first_layer_size(d) + neurons * slots_per_row(d) + neurons) * 4
    # membrane, refractory, post trace (4 B); pre traces; the ring; input
    # rates; output counts (int64); input spikes (1 B)
    state = (neurons * 12 + source_count(d) * 4 + (d["axon"] + 1) * neurons * 4 + inputs * 4
             + output_size(d) * 8 + inputs)
    return learned + state
