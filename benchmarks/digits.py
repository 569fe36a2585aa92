"""Unsupervised learning of scikit-learn's 8x8 digits by an agent of the
``digits`` layout, on a protocol where nothing is chosen on test data.

Protocol:

- **Data.** The 1797 digits, shuffled once (data seed 0) and split three
  ways: 1000 for training, 397 for validation (all tuning), 400 for test
  (the final figure only: ``--split test``).
- **Input.** Each digit is scaled to the same total intensity (its 64
  pixel values sum to ``TOTAL``, each at most 1): a line of 64 rate values
  through the agent's input hook, shown for ``SHOW`` steps, then a line of
  zeros rests the agent for ``REST`` steps.
- **Learning.** A fresh agent of the layout, with no override unless
  ``--set`` gives one, learns from one pass over the training digits in an
  order of its seed's. No label is used.
- **Frozen passes.** Then a ``freeze`` line stops all adaptation (weights,
  thresholds: nothing learned changes), and the agent is shown the
  training digits again: each output cell's labelling is its mean spike
  count per class, as proportions over the classes. Then it is shown the
  validation or test digits: a digit's class is the one that the cells'
  spikes, weighted by those proportions, favour most (Diehl & Cook's
  "proportion weighting"; their assignment of each cell to its single
  best class is printed beside it).
- **Seeds.** Seeds 1 to N (default 5): each seed is an agent's seed (its
  noise and input spike draws) and its order of the training digits.
  Printed: each seed's accuracy, then the mean ± sample SD, and the mean
  training time (the learning pass only, on the CPU backend).

Needs scikit-learn (the ``benchmark`` extra): pip install -e ".[benchmark]"

    python benchmarks/digits.py [--split validation|test] [--seeds N] [--set NAME=VALUE ...]

Its last line: ``digits frozen SPLIT accuracy: MEAN ± SD over N seeds,
training S s``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from benchmark_options import add_set_option, overrides as parse_overrides

from hera.plugins import load_plugins

LAYOUT = "digits"
TRAIN, VALIDATION = 1000, 397
SHOW, REST, TOTAL = 40, 5, 20.0
DATA_SEED = 0


def split(data_seed: int = DATA_SEED) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The digits as line values (each digit's pixels scaled to sum to
    TOTAL, each at most 1) and labels, in three parts."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.data, dtype=torch.float64)
    images = (images / images.sum(1, keepdim=True) * TOTAL).clamp(max=1.0)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed))
    images, labels = images[order], labels[order]
    cut = (0, TRAIN, TRAIN + VALIDATION, len(labels))
    return {name: (images[a:b], labels[a:b])
            for name, a, b in zip(("train", "validation", "test"), cut, cut[1:])}


class Agent:
    """A fresh agent driven through its family's hooks, as hera drives it."""

    def __init__(self, layout: str, overrides: dict, seed: int):
        self.hook = load_plugins().family_hooks("abraxas")
        built = self.hook.hera_build(layout=layout, overrides=overrides,
                                     seed=seed)
        self.handle = self.hook.hera_load(definition=built.definition,
                                          tensors=built.tensors, state=None, device="cpu",
                                          seed=seed).handle

    def line(self, text: str) -> None:
        self.hook.hera_encode_input(agent=self.handle, line=text)

    def show(self, values: torch.Tensor) -> list[int]:
        """One digit for SHOW steps, then REST steps of rest; returns the
        output spike counts while it was shown."""
        self.line(" ".join(f"{v:.4f}" for v in values.tolist()))
        self.hook.hera_decode_output(agent=self.handle)  # a fresh window
        self.hook.hera_step(agent=self.handle, steps=SHOW)
        counts = self.hook.hera_decode_output(agent=self.handle)
        self.line("0")
        self.hook.hera_step(agent=self.handle, steps=REST)
        return [int(c) for c in counts.split()]

    def responses(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.show(image) for image in images], dtype=torch.float64)


class Readout:
    """What a frozen agent's answers say: each cell labelled by its mean
    spike count per class on labelled digits, as proportions over the
    classes; a digit's class is the one its cells' spikes, weighted by those
    proportions, favour most. Checks that nothing learned moves meanwhile."""

    def __init__(self, agent: Agent, images: torch.Tensor, labels: torch.Tensor):
        self.agent = agent
        self.learned = {k: v.clone() for k, v in agent.handle.snapshot().tensors.items()}
        self.trained = agent.responses(images)
        self.per_class = torch.stack([self.trained[labels == c].mean(0)
                                      for c in range(10)])  # [10, cells]
        self.proportions = self.per_class / self.per_class.sum(0, keepdim=True).clamp(min=1e-12)

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The guesses for ``images``, and the cells' spike counts."""
        answers = self.agent.responses(images)
        now = self.agent.handle.snapshot().tensors
        assert all(torch.equal(v, self.learned[k]) for k, v in now.items()), \
            "learning was not frozen during labelling and evaluation"
        return (answers @ self.proportions.T).argmax(1), answers


def classify(agent: Agent, images: torch.Tensor, labels: torch.Tensor,
             held: torch.Tensor) -> torch.Tensor:
    """Label a frozen agent's cells on ``images``; its guesses for ``held``."""
    return Readout(agent, images, labels).classify(held)[0]


def run_seed(data: dict, seed: int, overrides: dict, evaluate_on: str) -> dict:
    """Learn, freeze, label on the training digits, classify ``evaluate_on``."""
    agent = Agent(LAYOUT, overrides, seed)
    images, labels = data["train"]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    began = time.perf_counter()
    for image in images[order]:
        agent.show(image)
    seconds = time.perf_counter() - began

    agent.line("freeze")
    readout = Readout(agent, images, labels)
    held_images, held_labels = data[evaluate_on]
    guesses, answers = readout.classify(held_images)
    best_class = readout.per_class.argmax(0)
    votes = torch.zeros(len(answers), 10, dtype=torch.float64).index_add_(1, best_class, answers)
    return {"accuracy": float((guesses == held_labels).double().mean()),
            "assigned": float((votes.argmax(1) == held_labels).double().mean()),
            "silent": int((answers.sum(1) == 0).sum()), "seconds": seconds,
            "classes": int((best_class.bincount(minlength=10) > 0).sum()),
            "active": int((readout.trained.sum(0) > 0).sum())}


def options(description: str) -> tuple[argparse.Namespace, dict, dict]:
    """The digits benchmarks' command line (``--split``, ``--seeds``,
    ``--set``): the arguments, the layout's overrides, and the data."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="what to evaluate on (default: validation; test for the figure)")
    parser.add_argument("--seeds", type=int, default=5)
    add_set_option(parser)
    args = parser.parse_args()
    os.environ.setdefault("HERA_ABRAXAS_BACKEND", "cpp")
    return args, parse_overrides(args.set), split()


def main() -> None:
    args, overrides, data = options(__doc__.splitlines()[0])
    print(f"layout {LAYOUT}, overrides {overrides or 'none'}; {TRAIN} training, "
          f"{VALIDATION} validation, {len(data['test'][1])} test digits; each digit summing "
          f"to {TOTAL}, show {SHOW} + rest {REST} steps; backend "
          f"{os.environ['HERA_ABRAXAS_BACKEND']}")
    results = []
    for seed in range(1, args.seeds + 1):
        r = run_seed(data, seed, overrides, args.split)
        results.append(r)
        print(f"seed {seed}: {args.split} accuracy {r['accuracy']:.3f} (best-class assignment "
              f"{r['assigned']:.3f}; {r['silent']} digits "
              f"with no output spike; {r['active']} cells answer, {r['classes']} classes have "
              f"cells); training {r['seconds']:.2f} s")
    accuracies = [r["accuracy"] for r in results]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    seconds = statistics.mean(r["seconds"] for r in results)
    print(f"digits frozen {args.split} accuracy: {statistics.mean(accuracies):.3f} ± "
          f"{spread:.3f} over {len(results)} seeds, training {seconds:.2f} s")


if __name__ == "__main__":
    main()
