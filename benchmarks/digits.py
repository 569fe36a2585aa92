"""Unsupervised learning of scikit-learn's 8x8 digits through the agent's
input path, scored as the issue asks.

One pass over the first 1000 digits: each digit is written as a line of 64
numbers (pixel / 16) through ``hera_encode_input``, shown for ``--show``
steps, then a blank line rests the sheet for ``--rest`` steps. Plasticity
is always on; no labels are used while learning. Then each output neuron is
labelled by the class it answered most on the training digits, and every
other digit is classified by a vote of the output neurons weighted by their
spikes. Prints accuracy, wall time and steps/s.

Needs scikit-learn (the ``benchmark`` extra): pip install -e ".[benchmark]"

    python benchmarks/digits.py [--show 30] [--rest 10] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hera.plugins import load_plugins

LAYOUT = {"width": 10, "height": 1, "depth": 1, "cells": 10, "inputs": 64, "dendrite": 0,
          "axon": 2, "noise": 0.2, "max_rate": 0.5, "input_rate": 0.0}


def present(hook, agent, pixels, steps: int) -> list[int]:
    """Show one digit for ``steps`` steps; return the output spike counts."""
    hook.hera_encode_input(family="abraxas", agent=agent, line=" ".join(f"{p / 16:.4f}" for p in pixels))
    hook.hera_decode_output(family="abraxas", agent=agent)  # start a fresh window
    hook.hera_step(family="abraxas", agent=agent, steps=steps)
    line = hook.hera_decode_output(family="abraxas", agent=agent)
    return [int(x) for x in line.split()]


def rest(hook, agent, steps: int) -> None:
    hook.hera_encode_input(family="abraxas", agent=agent, line=" ".join(["0"] * 64))
    hook.hera_step(family="abraxas", agent=agent, steps=steps)


def main() -> None:
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=30)
    parser.add_argument("--rest", type=int, default=10)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    overrides = dict(LAYOUT)
    for pair in args.set:
        key, _, value = pair.partition("=")
        overrides[key] = json.loads(value)

    digits = load_digits()
    images, labels = digits.data, digits.target
    plugins = load_plugins()
    hook = plugins.hook
    built = hook.hera_build(family="abraxas", layout="example", overrides=overrides, seed=args.seed)
    agent = hook.hera_load(family="abraxas", definition=built.definition, tensors=built.tensors,
                           state=None, device="cpu", seed=args.seed).handle

    began = time.perf_counter()
    for pixels in images[: args.train]:
        present(hook, agent, pixels, args.show)
        rest(hook, agent, args.rest)
    learned = time.perf_counter() - began
    steps = args.train * (args.show + args.rest)

    def responses(subset) -> torch.Tensor:
        rows = []
        for pixels in subset:
            rows.append(present(hook, agent, pixels, args.show))
            rest(hook, agent, args.rest)
        return torch.tensor(rows, dtype=torch.float64)

    train = responses(images[: args.train])
    per_class = torch.stack([train[torch.as_tensor(labels[: args.train] == c)].mean(0)
                             for c in range(10)])
    neuron_label = per_class.argmax(0)
    test = responses(images[args.train:])
    votes = torch.zeros(len(test), 10, dtype=torch.float64)
    votes.index_add_(1, neuron_label, test)
    guess = votes.argmax(1).numpy()
    silent = int((test.sum(1) == 0).sum())
    accuracy = float((guess == labels[args.train:]).mean())
    print(f"accuracy {accuracy:.3f} on {len(test)} digits ({silent} with no output spike); "
          f"training {learned:.1f} s for {steps} steps ({steps / learned:.0f} steps/s); "
          f"{int((neuron_label.bincount(minlength=10) > 0).sum())} classes have neurons")


if __name__ == "__main__":
    main()
