"""What `predict` writes: one row per sample, `{"id", "label", "predictions": [{"class",
"score", "seen"}, ...]}` best first (JSON), the same as CSV (one line per prediction) or as a
text table. A video that could not be read gets its row with `error` and no predictions, so
that the others go on and a script sees which one failed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from clipclap_cli.errors import ClipclapError
from clipclap_cli.files import json_text

FORMATS = ("table", "csv", "json")
_BY_SUFFIX = {".json": "json", ".csv": "csv", ".txt": "table", ".md": "table"}
CSV_COLUMNS = ("id", "label", "rank", "class", "score", "seen", "error")


class OutputError(ClipclapError):
    """An output format or file that cannot be written as asked."""


def output_format(given: str | None, path: Path | None) -> str:
    """The format asked for (`--format`), else the output file's extension's, else a table."""
    if given is not None:
        if given not in FORMATS:
            raise OutputError(f"--format {given!r}: expected one of {', '.join(FORMATS)}")
        return given
    if path is None:
        return "table"
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_SUFFIX:
        raise OutputError(f"{path}: cannot tell the format from {suffix or 'no extension'!r}; "
                          f"name it .json, .csv or .txt, or pass --format {'|'.join(FORMATS)}")
    return _BY_SUFFIX[suffix]


def prediction_rows(ids: list[str], scores: torch.Tensor, indices: torch.Tensor, class_names: list[str],
                    seen_mask: torch.Tensor, labels: list[str] | None = None) -> list[dict]:
    """Rows of ranked classes (`scores`, `indices`: (N, k) from `scoring.rank`), each with its
    sample's id and, for stored samples, its label's name."""
    seen = seen_mask.tolist()
    rows = []
    for i, (row_scores, row_classes) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True)):
        row = {"id": ids[i]}
        if labels is not None:
            row["label"] = labels[i]
        row["predictions"] = [{"class": class_names[c], "score": s, "seen": bool(seen[c])}
                              for s, c in zip(row_scores, row_classes, strict=True)]
        rows.append(row)
    return rows


def failed_rows(failed: dict[str, str]) -> list[dict]:
    """Rows of the videos that did not decode: their reason, no predictions."""
    return [{"id": vid, "error": reason, "predictions": []} for vid, reason in failed.items()]


def render(rows: list[dict], fmt: str) -> str:
    """`rows` as the text of a file (or of stdout) in `fmt`."""
    if fmt == "json":  # a list, one row a line: readable, and a large file stays greppable
        return "[\n" + ",\n".join(json_text(row, indent=None, what="the predictions").rstrip("\n")
                                    for row in rows) + ("\n]\n" if rows else "]\n")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerows(
                [row["id"], row.get("label", ""), rank, p["class"], repr(p["score"]), str(p["seen"]).lower(), ""]
                for rank, p in enumerate(row["predictions"], 1))
            if "error" in row:
                writer.writerow([row["id"], row.get("label", ""), "", "", "", "", row["error"]])
        return buffer.getvalue()
    columns, lines = table_cells(rows)
    widths = [max(len(str(x)) for x in column) for column in zip(columns, *lines, strict=True)]
    return "".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in [columns, *lines])


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """A table's header and cells: a line per prediction, the sample's id and label on its first."""
    labelled = any("label" in row for row in rows)
    columns = ["id", *(["label"] if labelled else []), "rank", "class", "score", "trained on"]
    lines = []
    for row in rows:
        first = [row["id"], *([row.get("label", "")] if labelled else [])]
        blank = [""] * len(first)
        if "error" in row:
            lines.append([*first, "", f"not read: {row['error']}", "", ""])
        for rank, p in enumerate(row["predictions"], 1):
            lines.append([*(first if rank == 1 else blank), str(rank), p["class"], f"{p['score']:.4f}",
                          "yes" if p["seen"] else "new"])
    return columns, lines
