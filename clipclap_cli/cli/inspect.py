"""`clipclap datasets|encoders|heads|plugins`: what the registries and the store hold."""

from typing import Annotated

import typer

from clipclap_cli.cli._options import DEFAULT_STORE, DatasetArg, DatasetsOpt, JsonOpt, StoreOpt, catalog, store
from clipclap_cli.cli.console import out, print_json, table

CheckNames = Annotated[list[str] | None, typer.Argument(
    metavar="[NAME]...", help="Kinds, encoders or heads to check (bare or SOURCE:NAME); default: everything registered")]


def install(app, pm) -> None:
    datasets = typer.Typer(help="Datasets: registry entries, formats, and what the store holds.", no_args_is_help=True)
    encoders = typer.Typer(help="Feature extractors registered by plugins.", no_args_is_help=True)
    heads = typer.Typer(help="Fusion heads registered by plugins.", no_args_is_help=True)
    app.add_typer(datasets, name="datasets")
    app.add_typer(encoders, name="encoders")
    app.add_typer(heads, name="heads")

    @datasets.command("list")
    def datasets_list(datasets_file: DatasetsOpt = None, store_path: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
        """List dataset entries and whether the store holds them. From datasets.toml, plugins and
        your file."""
        from clipclap_cli.data.datasets_toml import project_datasets_toml

        cat = catalog(pm, datasets_file)
        held = set(store(store_path).datasets())
        project = str(project_datasets_toml())
        rows = [
            {"name": e.name, "display_name": e.display_name, "kind": e.kind,
             "plugin": cat.adapters.entry(e.kind).plugin, "split": e.split,
             "defined_in": "clipclap (datasets.toml)" if e.origin == project else e.origin,
             "in_store": e.name in held, "problem": problem}
            for e, problem in cat.listing()
        ]
        if as_json:
            return print_json(rows)
        out.print(table(None, ["name", "display name", "kind", "kind from", "defined by", "split", "in store"],
                        [[r["name"] + (" (ambiguous)" if r["problem"] else ""), r["display_name"], r["kind"],
                          r["plugin"], r["defined_in"], r["split"], "yes" if r["in_store"] else "no"] for r in rows]))

    @datasets.command("kinds")
    def datasets_kinds(as_json: JsonOpt = False):
        """List dataset formats (adapter kinds) and their plugins."""
        from clipclap_cli.plugins.registry import list_dataset_kinds

        rows = [{"kind": r.name, "plugin": r.plugin, "distribution": r.distribution, "description": r.obj.description}
                for r in list_dataset_kinds(pm)]
        if as_json:
            return print_json(rows)
        out.print(table(None, ["kind", "plugin", "description"],
                        [[r["kind"], _plugin_cell(r), r["description"]] for r in rows]))

    @datasets.command("show")
    def datasets_show(name: DatasetArg, store_path: StoreOpt = DEFAULT_STORE, datasets_file: DatasetsOpt = None,
                      as_json: JsonOpt = False):
        """Show what the store holds for a dataset. Videos and classes per split, features, label
        embeddings."""
        from clipclap_cli.errors import StoreError

        fs = store(store_path)
        try:
            info = fs.describe(name)
        except StoreError:
            if name not in fs.datasets():
                catalog(pm, datasets_file).get(name)  # a name nothing defines: say so, not "import it"
            raise
        if as_json:
            return print_json(info)
        _show(name, info)

    @encoders.command("list")
    def encoders_list(as_json: JsonOpt = False):
        """List encoders: id, modality, dim, plugin, aliases. The "label embeddings" column says
        which can serve `clipclap embed`."""
        from clipclap_cli.api import offers_label_embeddings
        from clipclap_cli.plugins.registry import list_encoders

        rows = [{"id": r.name, "modality": r.obj.modality, "dim": r.obj.dim,
                 "label_embeddings": offers_label_embeddings(r.obj), "plugin": r.plugin, "distribution": r.distribution,
                 "aliases": list(r.aliases), "description": r.obj.description} for r in list_encoders(pm)]
        if as_json:
            return print_json(rows)
        out.print(table(None, ["id", "modality", "dim", "label embeddings", "plugin", "aliases"],
                        [[r["id"], r["modality"], r["dim"], "yes" if r["label_embeddings"] else "no", _plugin_cell(r),
                          ", ".join(r["aliases"])] for r in rows]))

    @heads.command("list")
    def heads_list(params: bool = typer.Option(False, "--params", help="Show each head's parameters"), as_json: JsonOpt = False):
        """List fusion heads: id, plugin, aliases. With --params, their parameters too."""
        from clipclap_cli.params import describe_params
        from clipclap_cli.plugins.registry import list_heads

        rows = [{"id": r.name, "plugin": r.plugin, "distribution": r.distribution, "aliases": list(r.aliases),
                 "description": (r.obj.__doc__ or "").strip().splitlines()[0] if r.obj.__doc__ else "",
                 "params": describe_params(r.obj.Params)} for r in list_heads(pm)]
        if as_json:
            return print_json(rows)
        out.print(table(None, ["id", "plugin", "aliases", "description"],
                        [[r["id"], _plugin_cell(r), ", ".join(r["aliases"]), r["description"]] for r in rows]))
        if params:
            for r in rows:
                out.print(table(f"{r['id']} parameters (-p KEY=VALUE)", ["name", "type", "default", "doc"],
                                [[p["name"], p["type"], p["default"], p["doc"]] for p in r["params"]]))

    plugins = typer.Typer(help="Installed plugins, those left out, and the contract check.",
                          invoke_without_command=True)
    app.add_typer(plugins, name="plugins")

    @plugins.callback()
    def plugins_list(ctx: typer.Context,
                     all_: bool = typer.Option(False, "--all", help="Include the built-in plugins"),
                     as_json: JsonOpt = False):
        """List installed plugins, their hooks, and those left out (a plugin that failed to load or
        register shows as failed, with the reason). `clipclap plugins check` runs the contract kit."""
        if ctx.invoked_subcommand is not None:
            return
        from clipclap_cli.data.datasets_toml import load_catalog
        from clipclap_cli.plugins.manager import DEFAULT_PLUGINS, distribution, failures
        from clipclap_cli.plugins.registry import list_dataset_kinds, list_encoders, list_heads

        # run every registering hook, so that a plugin whose hook fails shows as failed here
        for collect in (list_dataset_kinds, list_encoders, list_heads, load_catalog):
            collect(pm)
        notices = {f.plugin: f.reason for f in failures(pm) if not f.left_out}
        rows = []
        for plugin in pm.get_plugins():
            name = pm.get_name(plugin)
            if name in DEFAULT_PLUGINS and not all_:
                continue
            hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
            status = "ok" + (f" (warning: {notices[name]})" if name in notices else "")
            rows.append({"name": name, "distribution": distribution(pm, name), "hooks": hooks, "status": status})
        for failure in failures(pm):
            if failure.left_out:
                rows.append({"name": failure.plugin, "distribution": failure.distribution, "hooks": [],
                             "status": f"failed: {failure.reason}"})
        rows.sort(key=lambda r: r["name"])
        if as_json:
            return print_json(rows)
        if not rows:
            out.print("no third-party plugin is installed (`clipclap plugins --all` lists the built-in ones; "
                      "`clipclap docs plugins` says how to write one)")
            return
        out.print(table(None, ["name", "distribution", "hooks", "status"],
                        [[r["name"], r["distribution"] or "(built-in)", ", ".join(r["hooks"]), r["status"]]
                         for r in rows]))

    @plugins.command("check")
    def plugins_check(names: CheckNames = None, as_json: JsonOpt = False):
        """Run the contract kit on tiny random inputs.

        Every dataset kind, encoder and fusion head (built-in and installed plugins, or those
        named), with the checks clipclap runs on a plugin's output when it uses it. Exit 1 on a
        failure."""
        from clipclap_cli.errors import ClipclapError
        from clipclap_cli.testing import check_registered

        results = check_registered(pm, names or None)
        if as_json:
            print_json([r.__dict__ for r in results])
        else:
            out.print(table(None, ["what", "name", "plugin", "result", "reason"],
                            [[r.what, r.name, r.plugin, r.status, r.reason] for r in results]))
        failed = [r for r in results if r.status == "fail"]
        if failed:
            raise ClipclapError(f"{len(failed)} of {len(results)} checks failed: "
                                + ", ".join(f"{r.what} {r.name!r}" for r in failed))


def _plugin_cell(row: dict) -> str:
    """A registration's plugin, with its distribution where it is not clipclap's own."""
    dist = row.get("distribution")
    return row["plugin"] if not dist or dist.startswith("clipclap ") else f"{row['plugin']} ({dist})"


def _show(name: str, info: dict) -> None:
    """Print what the store holds for dataset `name` (`info` is the store's `describe`)."""
    out.print(f"[bold]{name}[/bold]  {info['videos']} videos, {info['classes']} classes  (store {info['store']})")
    out.print(f"source: {info['source']}   created: {info['created']}   clipclap {info['clipclap_version']}")
    out.print("features: " + ", ".join(f"{k} ({v}-d)" for k, v in info["features"].items()))
    for modality, how in info.get("feature_provenance", {}).items():
        taken = (f"frame recipe {how['frame_recipe']['name']}" if "frame_recipe" in how
                 else f"audio at {how.get('audio', {}).get('sample_rate', '?')} Hz")
        weights = "random weights" if how.get("random_weights") else f"weights sha256 {how.get('weights_sha256', '')[:12]}"
        out.print(f"  {modality}: {how.get('encoder', '?')} {how.get('model', '')}, {weights}, {taken}")
    labels = ", ".join(f"{k} ({v}-d)" for k, v in info["label_embeddings"].items())
    out.print("label embeddings: " + (labels or f"none yet: run `clipclap embed {name} --encoder clip` (and clap)"))
    for split, parts in info["splits"].items():
        rows = [[p, v["videos"], v["classes"]] for p, v in parts.items() if p != "how"]
        how = parts.get("how", {})
        out.print(table(f"split {split} ({how.get('method', '')})", ["partition", "videos", "classes"], rows))
    if not info["splits"]:
        out.print(f"no split yet: run `clipclap split {name}"
                  + ("`" if info["class_splits"] else " --from DIR`, or draw one with `--seen N --unseen M`"))
