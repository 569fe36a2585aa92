"""Continual learning: digits 0-4, then 5-9, each shown once, no replay.

The data, the agent (the ``digits`` layout, no override unless ``--set``),
the presentation, the frozen labelling and the proportion-weighting readout
are those of ``benchmarks/digits.py`` (see docs/evaluation.md). Only the
order of learning changes: first every training digit of classes 0-4, then
every one of classes 5-9, each class block in an order of the seed's. After
a ``freeze``, the cells are labelled on all training digits and every
validation (or ``--split test``) digit is classified 10 ways; the accuracy
is reported on the digits of the old classes (0-4) and of the new ones
(5-9), beside the same agent trained on all the training digits mixed (the
mixed baseline, over all classes).

Needs scikit-learn (the ``benchmark`` extra).

    python benchmarks/continual.py [--split validation|test] [--seeds 5] [--set NAME=VALUE ...]

Its last line: ``continual: old classes A, new classes B, mixed baseline C``
(means over the seeds).
"""

from __future__ import annotations

import statistics

import torch
from digits import LAYOUT, Agent, classify, options, run_seed

OLD = (0, 1, 2, 3, 4)


def run_sequential(data: dict, seed: int, overrides: dict, evaluate_on: str) -> dict:
    """Learn the old classes, then the new ones; score both, frozen."""
    agent = Agent(LAYOUT, overrides, seed)
    images, labels = data["train"]
    old = torch.isin(labels, torch.tensor(OLD))
    g = torch.Generator().manual_seed(seed)
    for block in (old, ~old):
        chosen = images[block]
        for image in chosen[torch.randperm(len(chosen), generator=g)]:
            agent.show(image)
    agent.line("freeze")
    held_images, held_labels = data[evaluate_on]
    guesses = classify(agent, images, labels, held_images)
    right = guesses == held_labels
    held_old = torch.isin(held_labels, torch.tensor(OLD))
    return {"old": float(right[held_old].double().mean()),
            "new": float(right[~held_old].double().mean())}


def main() -> None:
    args, overrides, data = options(__doc__.splitlines()[0])
    print(f"layout {LAYOUT}, overrides {overrides or 'none'}; classes 0-4 then 5-9, each "
          f"training digit once; frozen 10-way {args.split} accuracy")
    rows = []
    for seed in range(1, args.seeds + 1):
        r = run_sequential(data, seed, overrides, args.split)
        r["mixed"] = run_seed(data, seed, overrides, args.split)["accuracy"]
        rows.append(r)
        print(f"seed {seed}: old classes {r['old']:.3f}, new classes {r['new']:.3f}, "
              f"mixed baseline {r['mixed']:.3f}")
    mean = {key: statistics.mean(r[key] for r in rows) for key in ("old", "new", "mixed")}
    print(f"continual: old classes {mean['old']:.3f}, new classes {mean['new']:.3f}, "
          f"mixed baseline {mean['mixed']:.3f}")


if __name__ == "__main__":
    main()
