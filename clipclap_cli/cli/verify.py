"""`clipclap verify`: check every array of a store (or of one dataset) for damage; reads only."""

from __future__ import annotations

from typing import Annotated

import typer

from clipclap_cli.cli._options import DEFAULT_STORE, JsonOpt, StoreOpt, checked_name, store
from clipclap_cli.cli.console import err, out, print_json, table


def install(app, pm) -> None:
    @app.command("verify")
    def verify(
        dataset: Annotated[str | None, typer.Argument(metavar="DATASET", callback=checked_name("dataset"),
                                                      help="Dataset to check (default: every dataset in the store)")] = None,
        store_path: StoreOpt = DEFAULT_STORE,
        as_json: JsonOpt = False,
    ):
        """Check the store's arrays for damage. Checksums, missing chunks, non-finite or
        out-of-range values; exits 1 when any array is damaged, and says how to write it again."""
        from clipclap_cli.errors import StoreError

        fs = store(store_path)
        if not fs.location.exists():
            raise StoreError(f"no store at {fs.location}")
        damaged_groups = {key.partition("~")[0] for key in fs.damaged_groups()}
        names = [dataset] if dataset is not None else sorted(set(fs.datasets()) | damaged_groups)
        rows = []
        for name in names:
            try:
                rows += fs.verify(name)
            except StoreError as e:  # the dataset's group itself cannot be opened
                rows.append({"dataset": name, "array": "(the dataset's group)", "status": "damaged",
                             "problem": str(e), "repair": "import, extract or generate it again"})
        damaged = [r for r in rows if r["status"] == "damaged"]
        unchecked = [r for r in rows if r["status"] == "unchecked"]
        if as_json:
            print_json(rows)
        elif damaged or unchecked:
            out.print(table(f"{fs.location}: {len(damaged)} damaged, {len(unchecked)} without checksums",
                            ["dataset", "array", "status", "problem", "repair"],
                            [[r["dataset"], r["array"], r["status"], r["problem"], r["repair"]]
                             for r in damaged + unchecked]))
        err.print(f"{len(rows)} arrays of {len(names)} dataset(s) checked: {len(damaged)} damaged"
                  + (f", {len(unchecked)} without checksums" if unchecked else ""))
        if damaged:
            raise typer.Exit(1)
