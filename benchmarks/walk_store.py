"""Count the walk of the store parameter through a command (issue 40 point 3).

Usage: python benchmarks/walk_store.py STORE RUN evaluate|train   (RUN: a trained run folder of STORE)

A step is a call of a function of clipclap_cli that receives (as any argument, `self` included)
the FeatureStore, or what was read through it: the ProtocolData or one of its sets (EvalSet,
TrainSet, ProtocolSets), or the command's reads of it (DatasetReads). The store's creation is a
step of the module that creates it. Steps are
kept in running order, the first time each function is seen (the walk of the code, not each
epoch's repetition); consecutive steps in one module merge. A climb is a step into a module
of a higher layer than the step before it (layers of
docs/architecture.md: cli 7, train/extract/report 6, runs 5, evaluate 4, data 3, store 2,
plugins 1, top level 0).
"""
import sys

LAYERS = {"cli": 7, "train": 6, "extract": 6, "report": 6, "runs": 5, "evaluate": 4, "data": 3, "store": 2,
          "plugins": 1}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 2 else 0


def main():
    store_path, run, command = sys.argv[1:4]
    helpers = "--helpers" in sys.argv  # a call from a function of the same module is part of its step
    from clipclap_cli.data import protocol_data as pd
    from clipclap_cli.store.feature_store import FeatureStore
    tracked = tuple(t for t in (FeatureStore, pd.ProtocolData, pd.EvalSet, pd.TrainSet,
                                getattr(pd, "ProtocolSets", None), getattr(pd, "DatasetReads", None)) if t)
    seen, walk = set(), []

    def profile(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("clipclap_cli."):
            return
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if not any(isinstance(frame.f_locals.get(a), tracked) for a in names):
            return
        caller = frame.f_back
        caller_module = caller.f_globals.get("__name__", "") if caller else ""
        if code.co_qualname == "FeatureStore.__init__":  # the store is made: a step of its maker
            module, name = caller_module, f"{caller.f_code.co_qualname} (makes the store)"
        else:
            name = code.co_qualname
        key = (module, name)
        if key in seen or (helpers and caller_module == module and not name.endswith("(makes the store)")):
            return
        seen.add(key)
        inside = caller_module.startswith("clipclap_cli.") and layer(caller_module) == layer(module) \
            and not name.endswith("(makes the store)")
        walk.append((module, name, inside))

    from clipclap_cli.cli import main as cli_main
    if command == "evaluate":
        sys.argv = ["clipclap", "evaluate", run]
    else:
        sys.argv = ["clipclap", "train", "demo", "--store", store_path, "--run", run, "--epochs", "2",
                    "--batches-per-epoch", "2", "--no-stack"]
    sys.setprofile(profile)
    try:
        cli_main()
    except SystemExit as e:
        if e.code:
            raise
    finally:
        sys.setprofile(None)
    steps = []
    for module, fn, _inside in walk:
        if steps and steps[-1][0] == module:
            steps[-1][1].append(fn)
        else:
            steps.append((module, [fn]))
    climbs, prev = 0, None
    for module, fns in steps:
        mark = ""
        if prev is not None and layer(module) > prev:
            climbs += 1
            mark = f"   <- climb {climbs}"
        prev = layer(module)
        print(f"  [{layer(module)}] {module.split('.', 1)[1]}: {', '.join(fns)}{mark}")
    print(f"{command}: {len(walk)} calls, {len(steps)} steps, {len({m for m, _, _ in walk})} modules, {climbs} climbs")


main()
