"""Compare two run folders' runs, run by run (e.g. `train --seeds 5` stacked and `--no-stack`).

    python benchmarks/compare_runs.py RUNS_A RUNS_B

For each run under RUNS_A with results (and the run at the same place under RUNS_B): its epochs
and best epoch per stage, its test S/U/HM/ZSL, and how far B's numbers are from A's. Ends with
the largest relative difference of an epoch loss and the largest difference of a validation
figure over all epochs, and whether every best epoch and learning rate agreed (exit 1 if not).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("seen", "unseen", "hm", "zsl")


def records(run: Path, stage: int) -> list[dict]:
    return [json.loads(line) for line in (run / f"stage{stage}" / "metrics.jsonl").read_text().splitlines()]


def main(a_root: Path, b_root: Path) -> int:
    worst_loss = worst_val = worst_test = 0.0
    disagreements = []
    for results in sorted(a_root.rglob("results.json")):
        run_a = results.parent
        run_b = b_root / run_a.relative_to(a_root)
        line = [str(run_a.relative_to(a_root))]
        for stage in (1, 2):
            ra, rb = records(run_a, stage), records(run_b, stage)
            if [r["epoch"] for r in ra] != [r["epoch"] for r in rb]:
                disagreements.append(f"{line[0]} stage {stage}: {len(ra)} against {len(rb)} epochs")
            for x, y in zip(ra, rb, strict=False):
                worst_loss = max([worst_loss] + [abs(v - y["losses"][k]) / abs(v) for k, v in x["losses"].items()])
                worst_val = max([worst_val] + [abs(x["val"][k] - y["val"][k]) for k in ("seen", "unseen", "hm")])
                if (x["best_epoch"], x["lr"]) != (y["best_epoch"], y["lr"]):
                    disagreements.append(f"{line[0]} stage {stage} epoch {x['epoch']}: best epoch or lr differ")
            line.append(f"stage {stage}: {len(ra)} epochs, best {ra[-1]['best_epoch']}")
        ta = json.loads(results.read_text())["test"]
        tb = json.loads((run_b / "results.json").read_text())["test"]
        diff = max(abs(ta[k] - tb[k]) for k in METRICS)
        worst_test = max(worst_test, diff)
        line.append("test " + " ".join(f"{k} {100 * ta[k]:.2f}" for k in METRICS) + f"  (|B - A| <= {diff:.1e})")
        print("  ".join(line))
    print(f"largest relative difference of an epoch loss: {worst_loss:.2e}; of a validation figure: {worst_val:.2e}; "
          f"of a test figure: {worst_test:.2e}")
    print("best epochs and learning rates: " + ("the same everywhere" if not disagreements else
                                                 "differ\n  " + "\n  ".join(disagreements)))
    return 1 if disagreements else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
