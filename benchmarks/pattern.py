"""Finding a repeated spike-timing pattern hidden in noise, after
Masquelier, Guyonneau & Thorpe (2008), PLoS ONE 3:e1377.

Input (1 step = 1 ms), through the agent's exact-spike path (``run`` with a
raster):

- every afferent fires as a Poisson process whose rate is redrawn from
  [0, ``MAX_RATE``] every ``RATE_BLOCK`` steps;
- a ``PATTERN``-step pattern, a frozen stretch of that same process on half
  of the afferents, replaces their spikes in a quarter of the
  ``PATTERN``-step slots, never two slots in a row, at random: inside and
  outside the pattern the rates are the same;
- each pattern spike is jittered by up to ``JITTER`` steps, and every
  afferent adds spontaneous spikes at ``SPONTANEOUS`` per step everywhere.

An agent of the ``pattern`` layout (no override unless ``--set``) learns for
``--seconds`` of simulated time. Then a ``freeze`` and ``TEST_SECONDS`` more
of the same input score each output cell: hit rate (pattern slots in which
it fires at least once), false alarms (other slots in which it fires), and
the latency ratio (mean latency of its first 10 detections while learning
over that of its detections in the test). The seed's best cell is the one
with the highest hit rate less false alarms; it is selective when its hit
rate is at least 0.9, its false alarms at most 0.05 and its latency ratio at
least 2.

    python benchmarks/pattern.py [--seeds 5] [--first-seed 1] [--seconds 300] [--set NAME=VALUE]

Its last line: ``pattern: hit H, false alarms F, latency ratio L, selective
in K of N seeds`` (H, F, L: means over the seeds of their best cells).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from benchmark_options import add_set_option, overrides as parse_overrides

from hera_family_abraxas import layouts, model

PATTERN, RATE_BLOCK, MAX_RATE, SPONTANEOUS, JITTER = 50, 25, 0.09, 0.01, 1
SHARE, TEST_SECONDS, CHUNK_SLOTS = 0.25, 50, 200


class Input:
    """The afferents' spikes, slot by slot, from one generator."""

    def __init__(self, afferents: int, seed: int):
        self.n = afferents
        self.g = torch.Generator().manual_seed(seed)
        self.pattern = self._background(1)[0]  # one frozen slot
        self.last_was_pattern = False

    def _background(self, slots: int) -> torch.Tensor:
        blocks = slots * PATTERN // RATE_BLOCK
        rates = torch.rand(blocks, 1, self.n, generator=self.g) * MAX_RATE
        rates = rates.expand(blocks, RATE_BLOCK, self.n).reshape(slots, PATTERN, self.n)
        return torch.rand(slots, PATTERN, self.n, generator=self.g) < rates

    def chunk(self, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[slots * PATTERN, afferents]`` spikes, and which slots hold the
        pattern."""
        spikes = self._background(slots)
        chosen = torch.zeros(slots, dtype=torch.bool)
        draws = torch.rand(slots, generator=self.g)
        half = self.n // 2
        for s in range(slots):
            # a share of SHARE of all slots, never two in a row
            if not self.last_was_pattern and draws[s] < SHARE / (1 - SHARE):
                chosen[s] = True
            self.last_was_pattern = bool(chosen[s])
        for s in chosen.nonzero().view(-1).tolist():
            step, channel = self.pattern[:, :half].nonzero(as_tuple=True)
            shift = torch.randint(-JITTER, JITTER + 1, step.shape, generator=self.g)
            step = (step + shift).clamp(0, PATTERN - 1)
            spikes[s, :, :half] = False
            spikes[s, step, channel] = True
        spikes |= torch.rand(spikes.shape, generator=self.g) < SPONTANEOUS
        return spikes.reshape(slots * PATTERN, self.n), chosen


def first_spikes(sheet: model.Sheet, raster: torch.Tensor) -> torch.Tensor:
    """Run the raster one step at a time; return ``[slots, cells]``: the
    step within each slot of each output cell's first spike (-1: none)."""
    slots = raster.shape[0] // PATTERN
    counts = sheet.output_counts
    first = torch.full((slots, counts.numel()), -1, dtype=torch.long)
    counts.zero_()
    for s in range(slots):
        row = first[s]
        for step in range(PATTERN):
            at = s * PATTERN + step
            sheet.run(1, spikes=raster[at:at + 1])
            if counts.any():
                row[(counts > 0) & (row < 0)] = step
                counts.zero_()
    return first


def score(first: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell: the share of pattern slots with a spike (hits), and of the
    other slots (false alarms)."""
    fired = first >= 0
    return fired[chosen].double().mean(0), fired[~chosen].double().mean(0)


def run_seed(seed: int, seconds: int, overrides: dict) -> dict:
    """Learn for ``seconds``, freeze, test; the seed's best cell's scores."""
    d = layouts.definition_for("pattern", overrides)
    sheet = model.Sheet(d, model.built_parameters(d), None, "cpu", seed=seed)
    source = Input(d["inputs"], seed)
    began = time.perf_counter()

    def play(total_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        firsts, chosen = [], []
        while total_slots > 0:
            raster, pattern_slots = source.chunk(min(CHUNK_SLOTS, total_slots))
            firsts.append(first_spikes(sheet, raster))
            chosen.append(pattern_slots)
            total_slots -= len(pattern_slots)
        return torch.cat(firsts), torch.cat(chosen)

    learn_first, learn_chosen = play(seconds * 1000 // PATTERN)
    learned = time.perf_counter() - began
    sheet.set_frozen(True)
    test_first, test_chosen = play(TEST_SECONDS * 1000 // PATTERN)
    hits, false_alarms = score(test_first, test_chosen)
    cell = int((hits - false_alarms).argmax())
    during = learn_first[learn_chosen, cell]
    detections = during[during >= 0] + 1  # latency: steps from the onset, >= 1
    tested = test_first[test_chosen, cell]
    tested = tested[tested >= 0] + 1
    latency_first = detections[:10].double().mean().item() if len(detections) else float("nan")
    latency_last = tested.double().mean().item() if len(tested) else float("nan")
    ratio = latency_first / latency_last
    hit, false_alarm = hits[cell].item(), false_alarms[cell].item()
    return {"cell": cell, "hit": hit, "false_alarms": false_alarm,
            "latency_first": latency_first, "latency_last": latency_last, "ratio": ratio,
            "selective": hit >= 0.9 and false_alarm <= 0.05 and ratio >= 2,
            "seconds": learned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=300, help="simulated seconds of learning")
    add_set_option(parser)
    args = parser.parse_args()
    os.environ.setdefault("HERA_ABRAXAS_BACKEND", "cpp")
    overrides = parse_overrides(args.set)
    print(f"layout pattern, overrides {overrides or 'none'}; {args.seconds} s learning, "
          f"{TEST_SECONDS} s frozen test; pattern {PATTERN} ms on half the afferents in "
          f"{SHARE:.0%} of slots, jitter {JITTER} ms, spontaneous {SPONTANEOUS * 1000:.0f} Hz")
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = run_seed(seed, args.seconds, overrides)
        results.append(r)
        print(f"seed {seed}: cell {r['cell']} hit {r['hit']:.3f}, false alarms "
              f"{r['false_alarms']:.3f}, latency {r['latency_first']:.1f} -> "
              f"{r['latency_last']:.1f} steps (ratio {r['ratio']:.2f}); "
              f"{'selective' if r['selective'] else 'not selective'}; {r['seconds']:.1f} s")
    mean = lambda key: statistics.mean(r[key] for r in results)  # noqa: E731
    print(f"pattern: hit {mean('hit'):.3f}, false alarms {mean('false_alarms'):.3f}, "
          f"latency ratio {mean('ratio'):.2f}, selective in "
          f"{sum(r['selective'] for r in results)} of {len(results)} seeds")


if __name__ == "__main__":
    main()
