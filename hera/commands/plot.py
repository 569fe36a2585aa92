"""Draw a picture of what an agent did or learned, to PNG or SVG:

  raster      spikes at their steps (from a recording with spikes)
  rates       each population's rate over time (a recording with rates)
  fields      each neuron's input weights as an image, 8x8 for digits
              (an agent, or a recording with weight snapshots)
  weights     the distribution of the learned weights
  thresholds  the distribution of the adaptive thresholds

SOURCE is a recording (.npz, from up --record) or an instance file; or name
an installed agent with --uuid/--callsign. Needs matplotlib
(pip install 'hera[plot]').
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("raster", "rates", "fields", "weights", "thresholds"),
                        metavar="KIND", help="raster, rates, fields, weights or thresholds")
    parser.add_argument("source", nargs="?", metavar="SOURCE",
                        help="a recording (.npz) or an instance file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the picture to write: OUT.png or OUT.svg")
    parser.add_argument("--shape", type=_shape, metavar="HxW",
                        help="fields: the image shape of the inputs (default: square)")
    parser.add_argument("--neurons", metavar="LIST",
                        help="fields: whose (e.g. 0-99 or 3,7; default: the first 100)")
    parser.add_argument("--tensor", default="input_weights", metavar="NAME",
                        help="fields: the learned tensor of input weights (default: "
                             "input_weights)")
    add_scope_options(parser, "plot")


def _shape(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) and int(width)):
        raise argparse.ArgumentTypeError(f"not HxW: {text!r}")
    return int(height), int(width)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hera import manager, plotting
    from hera.errors import UsageError

    if args.source and (args.uuid or args.callsign):
        raise UsageError("give SOURCE or --uuid/--callsign, not both")
    if Path(args.output).suffix.lower() not in plotting.FORMATS:
        raise UsageError(f"{args.output}: give a .png or .svg file")
    if args.source:
        source = Path(args.source)
        if not source.exists():
            from hera.errors import HeraError

            raise HeraError(f"{source}: no such file")
    else:
        store = store_for(args)
        target = manager.select_target(store, None, args.uuid, args.callsign)
        source = store.path(target.id)
    neurons = None
    if args.neurons:
        from hera.recording import parse_which

        try:
            neurons = [int(n) for n in parse_which(args.neurons)]
        except ValueError:
            raise UsageError(f"--neurons takes numbers such as 0-99 or 3,7, not "
                             f"{args.neurons!r}") from None
    fig = plotting.figure(args.kind, plotting.data_of(source), shape=args.shape,
                          neurons=neurons, tensor=args.tensor)
    print(f"{args.kind} -> {plotting.save(fig, args.output)}")
    return 0
