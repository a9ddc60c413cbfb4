"""`clipclap verify`: check every array of a store (or of one dataset) for damage; reads only."""

from typing import Annotated

import typer

from clipclap_cli.cli._options import DEFAULT_STORE, JsonOpt, StoreOpt, WaitOpt, checked_name, store
from clipclap_cli.cli.console import err, out, print_json, table


def install(app, pm) -> None:
    @app.command("verify")
    def verify(
        dataset: Annotated[str | None, typer.Argument(metavar="DATASET", callback=checked_name("dataset"),
                                                      help="Dataset to check (default: every dataset in the store)")] = None,
        store_path: StoreOpt = DEFAULT_STORE,
        as_json: JsonOpt = False,
        clean: Annotated[bool, typer.Option("--clean", help="Remove what killed writes left (and other hosts' "
                                            "staging), holding the store's writer lock")] = False,
        wait: WaitOpt = None,
    ):
        """Check the store's arrays for damage. Checksums, content digests, missing chunks,
        non-finite or out-of-range values; names what the store holds but does not read (debris
        of killed writes, other hosts' staging, foreign files). Exits 1 when any array is
        damaged, and says how to write it again."""
        from clipclap_cli.errors import StoreError
        from clipclap_cli.store.strays import clean as remove_debris
        from clipclap_cli.store.strays import strays

        fs = store(store_path, wait)
        if not fs.location.exists():
            raise StoreError(f"no store at {fs.location}")
        if clean:
            for stray in remove_debris(fs):
                err.print(f"removed {stray.key} ({stray.kind}: {stray.note})", markup=False)
        damaged_groups = {key.partition("~")[0] for key in fs.damaged_groups()}
        names = [dataset] if dataset is not None else sorted(set(fs.datasets()) | damaged_groups)
        rows = []
        for name in names:
            try:
                rows += fs.verify(name)
            except StoreError as e:  # the dataset's group itself cannot be opened
                rows.append({"dataset": name, "array": "(the dataset's group)", "status": "damaged",
                             "problem": str(e), "repair": "import, extract or generate it again"})
        rows += [{"dataset": stray.key.partition("/")[0].partition("~")[0] if "/" in stray.key else "(store)",
                  "array": stray.key, "status": stray.kind, "problem": stray.note,
                  "repair": "`clipclap verify --clean` removes it" if stray.removable else ""}
                 for stray in strays(fs)]
        damaged = [r for r in rows if r["status"] == "damaged"]
        stray_rows = [r for r in rows if r["status"] not in ("ok", "damaged", "unchecked")]
        unchecked = [r for r in rows if r["status"] == "unchecked"]
        if as_json:
            print_json(rows)
        elif damaged or unchecked or stray_rows:
            out.print(table(f"{fs.location}: {len(damaged)} damaged, {len(unchecked)} without checksums, "
                            f"{len(stray_rows)} not the store's data",
                            ["dataset", "array", "status", "problem", "repair"],
                            [[r["dataset"], r["array"], r["status"], r["problem"], r["repair"]]
                             for r in damaged + unchecked + stray_rows]))
        checked = len(rows) - len(stray_rows)
        err.print(f"{checked} arrays of {len(names)} dataset(s) checked: {len(damaged)} damaged"
                  + (f", {len(unchecked)} without checksums" if unchecked else "")
                  + (f"; {len(stray_rows)} thing(s) in the store that it does not read" if stray_rows else ""))
        if damaged:
            raise typer.Exit(1)
