"""The runs a report reads: the run folders found (`runs.finding.find_runs`), each loaded with
its results, config and training log checked (`file_checks`), one line for each left out.

No torch here: `clipclap report` stays quick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipclap_cli.errors import RunError
from clipclap_cli.protocol import completed_train_settings, run_name_parts
from clipclap_cli.report.file_checks import config_problem, figures_problem, results_problem, training_log_problem
from clipclap_cli.runs.files import CONFIG, RESULTS


@dataclass
class RunResult:
    """One run as a report sees it: its folder, results.json, the spec and the whole config.json."""

    path: Path
    results: dict[str, Any]
    spec: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    "The whole config.json: its `data_digest` and `store` say what the run was trained on"
    data_tag: str = ""
    "Set by `grouping.tag_data` where runs of this dataset were trained on different data"

    @property
    def method(self) -> str:
        parts = run_name_parts(self.spec)
        return self.spec["head"] + (f" ({', '.join(parts)})" if parts else "")

    @property
    def base_dataset(self) -> str:
        split = self.spec["split"]
        return self.spec["dataset"] if split == "cls_split" else f"{self.spec['dataset']} ({split})"

    @property
    def dataset(self) -> str:
        """The table's column: the dataset (and split), and the data it was trained on where the
        runs of that dataset were trained on different data."""
        return self.base_dataset + (f" [{self.data_tag}]" if self.data_tag else "")

    @property
    def data(self) -> str:
        """What the run was trained on: 'data DIGEST' (config.json's digest of every number it
        read: features, label embeddings, labels, split), else 'store PATH' (a run written before
        clipclap recorded the digest), else '' (neither recorded)."""
        digest, store = self.config.get("data_digest"), self.config.get("store")
        return f"data {digest}" if digest else f"store {store}" if store else ""

    @property
    def seed(self) -> int:
        """The seed of its results (results.json's, else the spec's)."""
        return self.results.get("seed", self.spec["train"]["seed"])

    def group_key(self) -> str:
        """Everything but the seed (and device): runs with the same key are repeats. The data is
        part of it: runs trained on different data are never seeds of one row."""
        train = {k: v for k, v in completed_train_settings(self.spec["train"]).items() if k not in ("seed", "device")}
        return json.dumps([self.spec["dataset"], self.spec["split"], self.spec["head"], self.spec["params"], train,
                           self.spec.get("legacy_label_order", False), self.data],
                          sort_keys=True)


def load_run(path: Path) -> RunResult:
    """A run's results, config and training log, checked: a RunError names the file and what is
    wrong, so that no damaged number reaches a table or a figure."""
    results, config = _read_json(path, RESULTS), _read_json(path, CONFIG)
    if problem := (results_problem(results) or figures_problem(results) or config_problem(config)
                   or training_log_problem(path)):
        raise RunError(f"{path}: {problem}")
    run = RunResult(path, results, config["spec"], config)
    try:  # the row's name and group, from settings of any shape a hand edit left
        run.method, run.group_key()
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{path}: config.json: the spec's settings cannot be read ({type(e).__name__}: {e})") from None
    return run


def load_runs(paths: list[Path]) -> tuple[list[RunResult], list[str]]:
    """The runs at `paths` that load and pass the checks, and one line for each that does not
    (the report leaves those out and says so, rather than failing whole or showing a bad number)."""
    runs, skipped = [], []
    for path in paths:
        try:
            runs.append(load_run(path))
        except RunError as e:
            skipped.append(str(e))
    return runs, skipped


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except OSError as e:
        raise RunError(f"{path}: {name} cannot be read ({e.strerror or e})") from None
    except ValueError as e:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        raise RunError(f"{path}: {name} is not valid JSON ({e})") from None
