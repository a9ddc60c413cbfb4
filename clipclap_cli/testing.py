"""The contract kit: every registered dataset format, encoder and fusion head exercised with tiny
random inputs, in seconds. `clipclap plugins check` prints its table; a plugin's own test suite
calls it in one line:

    from clipclap_cli.testing import check_plugin

    def test_my_plugin_keeps_the_contract():
        check_plugin(my_plugin_module)   # or the installed distribution's / entry point's name

Each check runs the code clipclap itself runs on a plugin's output (`plugins/contracts.py` for
losses, distances and features, the import's bundle checks and store writes for datasets), so a
plugin that passes here cannot break those checks later with the same kind of input.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipclap_cli.api import DatasetAdapter, FeatureDims
from clipclap_cli.errors import ClipclapError, MissingExtraError
from clipclap_cli.plugins.contracts import (
    ContractError,
    adapter_origin,
    check_bundle_form,
    check_description,
    check_distances,
    check_encoded,
    check_label_embedding,
    check_label_parts,
    check_loss,
    check_samples,
    encoder_origin,
    head_origin,
    validate_adapter,
    validate_encoder,
    validate_head,
)

DIMS = FeatureDims(audio=24, video=20, text_parts=(("clip", 16), ("clap", 12)))
"Input widths of the head checks: all different, so that a head mixing two of them up fails"
LABEL_SPACE_DIMS = FeatureDims(audio=12, video=16, text_parts=(("clip", 16), ("clap", 12)))
"The widths for a `label_space` head: video as wide as clip, audio as clap (and the two different)"
TRAIN_CLASSES, BATCH, EVAL_CLASSES, EVAL_SAMPLES = 5, 8, 7, 11


@dataclass(frozen=True)
class CheckResult:
    """One row of `clipclap plugins check`."""

    what: str
    "'dataset kind', 'encoder' or 'fusion head'"
    name: str
    plugin: str
    status: str
    "'pass', 'fail' or 'skip' (cannot be exercised here: the reason says why)"
    reason: str = ""


class _Skip(Exception):
    """A check that cannot run on this machine (an extra not installed, weights not here)."""


def _failed(what: str, exc: BaseException) -> ContractError:
    if isinstance(exc, ContractError):
        return exc
    text = str(exc) if isinstance(exc, ClipclapError) else f"{type(exc).__name__}: {exc}"
    return ContractError(f"{what}: {text}")


# ---------------------------------------------------------------- fusion heads
def check_head(head_cls: type, params: dict[str, Any] | None = None, seed: int = 0) -> None:
    """Build `head_cls` with its default Params (over them `params`) for small inputs, train it a
    step (unless it is `training_free`) and evaluate it: the loss a finite scalar with finite
    gradients, distances (N, C) and finite in every mode, eval mode deterministic and independent
    of which other samples share the batch, and the state dict enough to rebuild the same head (what checkpoints hold).
    Raises ContractError naming the head and the first break."""
    import torch

    from clipclap_cli.params import build_params

    validate_head(head_cls)
    origin = head_origin(head_cls)
    try:
        parsed = build_params(head_cls.Params, params or {})
    except Exception as e:  # a plugin's Params may raise anything
        raise _failed(f"{origin}: its default Params", e) from None
    check_label_parts(head_cls, parsed)
    dims = LABEL_SPACE_DIMS if getattr(head_cls, "label_space", False) else DIMS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            head = head_cls(dims, parsed)
        except Exception as e:  # a plugin's constructor may raise anything
            raise _failed(f"{origin} cannot be built for dims {dims}", e) from None
        if not getattr(head_cls, "training_free", False):
            _check_training_step(head, origin, dims)
            _check_stacked_form(head_cls, parsed, dims, origin, seed)
        audio, video = torch.randn(EVAL_SAMPLES, dims.audio), torch.randn(EVAL_SAMPLES, dims.video)
        eval_text = torch.randn(EVAL_CLASSES, dims.text)
    first = _distances(head, audio, video, eval_text)
    again = _distances(head, audio, video, eval_text)
    if any(not torch.equal(first[m], again[m]) for m in first):
        raise ContractError(f"{origin}: distances differ between two calls on the same input in eval mode "
                            "(dropout or batch statistics left on?)")
    part = _distances(head, audio[:3], video[:3], eval_text)
    if any(not torch.allclose(part[m], first[m][:3], rtol=1e-4, atol=1e-5) for m in first):
        raise ContractError(f"{origin}: a sample's distances depend on the other samples evaluated with it "
                            "(evaluation runs in batches of any size)")
    rebuilt = head_cls(dims, parsed)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    _run(origin, "load_state_dict", lambda: rebuilt.load_state_dict(torch.load(buffer, weights_only=True)))
    restored = _distances(rebuilt, audio, video, eval_text)
    if set(restored) != set(first) or any(not torch.equal(restored[m], first[m]) for m in first):
        raise ContractError(f"{origin}: a head rebuilt from its state dict gives other distances (it keeps "
                            "state outside its parameters and buffers, which checkpoints lose)")


def _check_training_step(head, origin: str, dims) -> None:
    """One training step of `head` on random data: a finite loss whose gradients reach
    param_groups() and are finite, an optimiser step and the replay forward."""
    import torch

    from clipclap_cli.plugins.fusion_head import Batch

    class_text = torch.randn(TRAIN_CLASSES, dims.text)
    target = torch.arange(BATCH) % TRAIN_CLASSES
    batch = Batch(torch.randn(BATCH, dims.audio), torch.randn(BATCH, dims.video), class_text[target], target)
    if type(head).needs_negatives:
        neg = (target + 1) % TRAIN_CLASSES
        batch.audio_neg, batch.video_neg = torch.randn(BATCH, dims.audio), torch.randn(BATCH, dims.video)
        batch.text_neg, batch.target_neg = class_text[neg], neg
    head.train()
    total, _ = _run(origin, "loss", lambda: check_loss(head, head.loss(batch, class_text)))
    if not bool(torch.isfinite(total)):
        raise ContractError(f"{origin}: the loss of a random batch is {float(total)}")
    _run(origin, "backward", total.backward)
    trained = list(head.param_groups())
    grads = [p.grad for p in trained if p.grad is not None]
    if not grads:
        raise ContractError(f"{origin}: no parameter of param_groups() got a gradient from the loss")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise ContractError(f"{origin}: the loss's gradients hold NaN or infinite values")
    _run(origin, "an optimiser step", torch.optim.Adam(trained, lr=1e-3).step)
    _run(origin, "replay_forward", lambda: head.replay_forward(batch))


def _check_stacked_form(head_cls: type, parsed: Any, dims, origin: str, seed: int) -> None:
    """A head with a stacked form (`FusionHead.stacked`): two heads of seeds `seed`+1 and +2 trained
    a step as one stack give each head's own loss on its own batch (its dropout masks drawn from
    its generator, as alone from the global one), gradients for every stacked parameter, and
    batch-norm statistics written back as the head alone moves them."""
    import copy

    import torch

    from clipclap_cli.plugins.contracts import check_stacked_loss
    from clipclap_cli.plugins.fusion_head import Batch
    from clipclap_cli.plugins.stacked_blocks import StackedParameters
    from clipclap_cli.train.stacked import can_stack

    if not can_stack(head_cls):
        return
    heads, states, batches = [], [], []
    class_text = torch.randn(TRAIN_CLASSES, dims.text)
    for run in (1, 2):
        torch.manual_seed(seed + run)
        heads.append(head_cls(dims, parsed))
        states.append(torch.get_rng_state())
        target = torch.randint(TRAIN_CLASSES, (BATCH,))
        batch = Batch(torch.randn(BATCH, dims.audio), torch.randn(BATCH, dims.video), class_text[target], target)
        if head_cls.needs_negatives:
            neg = (target + 1) % TRAIN_CLASSES
            batch.audio_neg, batch.video_neg = torch.randn(BATCH, dims.audio), torch.randn(BATCH, dims.video)
            batch.text_neg, batch.target_neg = class_text[neg], neg
        batches.append(batch)
    alone = [copy.deepcopy(h).train() for h in heads]
    own = []
    for head, state, batch in zip(alone, states, batches, strict=True):
        torch.set_rng_state(state)
        own.append(float(head.loss(batch, class_text)[0].detach()))
        head.replay_forward(batch)
    stacked_batch = Batch(*(None if getattr(batches[0], f) is None else torch.stack([getattr(b, f) for b in batches], 1)
                            for f in ("audio", "video", "text", "target", "audio_neg", "video_neg", "text_neg",
                                      "target_neg")))
    for head in heads:
        head.train()
    params = StackedParameters(heads)
    generators = [torch.Generator().set_state(state) for state in states]
    stacked = _run(origin, "stacked()", lambda: head_cls.stacked(heads, params, generators))
    total, _ = _run(origin, "the stacked loss", lambda: check_stacked_loss(
        heads[0], stacked.loss(stacked_batch, class_text), 2))
    _run(origin, "the stacked loss's backward", total.sum().backward)
    missing = [name for name, leaf in params.leaves.items() if leaf.grad is None]
    with torch.no_grad():
        _run(origin, "the stacked replay_forward", lambda: stacked.replay_forward(stacked_batch, class_text))
    _run(origin, "the stacked write_back", stacked.write_back)
    params.release()
    if not torch.allclose(total.detach(), torch.tensor(own), rtol=1e-4, atol=1e-5):
        raise ContractError(f"{origin}: its stacked form's loss per run is {total.tolist()}, the heads' own losses "
                            f"{own}: a stack must compute each run's loss as its head does, drawing run k's "
                            "dropout masks from generators[k] in the head's order")
    if missing:
        raise ContractError(f"{origin}: its stacked loss gives no gradient to {', '.join(missing)}")
    for head, lone in zip(heads, alone, strict=True):
        for (name, mine), theirs in zip(head.named_buffers(), lone.buffers(), strict=True):
            if not torch.allclose(mine.double(), theirs.double(), rtol=1e-4, atol=1e-6):
                raise ContractError(f"{origin}: after a stacked step its buffer {name} differs from the head's own "
                                    "(write_back() must give each head the statistics the stack moved)")


def _distances(head, audio, video, class_text) -> dict:
    import torch

    head.eval()
    with torch.no_grad():
        return _run(head_origin(head), "distances", lambda: check_distances(
            head, head.distances(audio, video, class_text), len(audio), len(class_text)))


def _run(origin: str, step: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ContractError:
        raise
    except Exception as e:  # a plugin's code may raise anything: named, not a traceback
        raise _failed(f"{origin}: {step} raised", e) from None


# ---------------------------------------------------------------- encoders
def example_items(modality: str, count: int, seed: int = 0) -> list[Any]:
    """What extraction hands `encode_batch` for `modality`: RGB uint8 frames (1, H, W, 3),
    mono float32 waveforms at 32 kHz of 10 s, or prompts."""
    from clipclap_cli.extract.media import CLIP_SECONDS, SAMPLE_RATE

    rng = np.random.default_rng(seed)
    if modality == "video":
        return [rng.integers(0, 256, (1, 48, 64, 3), dtype=np.uint8) for _ in range(count)]
    if modality == "audio":
        return [(0.1 * rng.standard_normal(SAMPLE_RATE * CLIP_SECONDS)).astype(np.float32) for _ in range(count)]
    return [f"a photo of class {i}" for i in range(count)]


def check_encoder(encoder: Any, params: dict[str, Any] | None = None) -> None:
    """Build the registered encoder's class with its `contract_params` (settings that need no
    weights: a tiny model, say; over them `params`), encode tiny random items of its modality:
    a float (B, dim) array, finite, the same for an item alone as in a batch, the same twice;
    with `label_embedding`, one finite (dim,) vector. Raises ContractError naming the encoder,
    or SkipCheck where it cannot run here (an extra or weights missing)."""
    from clipclap_cli.params import build_params

    validate_encoder(encoder)
    origin, cls = encoder_origin(encoder), type(encoder)
    values = dict(getattr(cls, "contract_params", {})) | dict(params or {})
    if "device" in getattr(cls.Params, "__dataclass_fields__", {}):
        values.setdefault("device", "cpu")
    try:
        enc = cls(build_params(cls.Params, values))
    except MissingExtraError as e:
        raise SkipCheck(str(e)) from None
    except Exception as e:  # a plugin's constructor may raise anything
        raise _failed(f"{origin} cannot be built with {values or 'its defaults'}", e) from None
    try:
        enc.check_weights()
    except ClipclapError as e:
        raise SkipCheck(f"needs weights that are not here ({e}); declare `contract_params` that need none") from None
    items = example_items(enc.modality, 3)
    try:
        batch = check_encoded(enc, _run(origin, "encode_batch", lambda: enc.encode_batch(items)), len(items))
    except MissingExtraError as e:
        raise SkipCheck(str(e)) from None
    if not np.isfinite(batch).all():
        raise ContractError(f"{origin}: encode_batch gave NaN or infinite values for finite random items")
    alone = check_encoded(enc, _run(origin, "encode_batch", lambda: enc.encode_batch(items[:1])), 1)
    if not np.allclose(alone[0], batch[0], rtol=1e-4, atol=1e-5):
        raise ContractError(f"{origin}: an item's features depend on the other items of its batch "
                            f"(largest difference {np.abs(alone[0] - batch[0]).max():.3g})")
    again = check_encoded(enc, enc.encode_batch(items), len(items))
    if not np.allclose(again, batch, rtol=1e-4, atol=1e-5):
        raise ContractError(f"{origin}: encoding the same items twice gives other features")
    if callable(getattr(enc, "label_embedding", None)):
        prompts = example_items("text", 2)
        try:
            vector = enc.label_embedding(prompts)
        except ClipclapError as e:  # a file it names is not here (a tokenizer's vocabulary): not a break
            raise SkipCheck(f"encode_batch passes; label_embedding needs what is not here ({e})") from None
        except Exception as e:  # anything else a plugin raises is
            raise _failed(f"{origin}: label_embedding raised", e) from None
        check_label_embedding(enc, vector)


class SkipCheck(Exception):
    """The check cannot run here; the message says why (`clipclap plugins check` shows 'skip')."""


# ---------------------------------------------------------------- dataset formats
def check_dataset_kind(adapter_cls: type, folder: Path | None = None) -> None:
    """Let the format write its `example(folder)` and read it the way `clipclap import` and
    `clipclap extract` do: `load_features` gives a bundle that passes the import's checks and is
    written to a temporary store with its split; `samples` gives unique ids with labels, and
    `describe_samples` classes that hold them. Raises ContractError naming the format, or
    SkipCheck when it offers no example."""
    from clipclap_cli.data.datasets_toml import build_entry
    from clipclap_cli.data.ingest import store_bundle
    from clipclap_cli.plugins.registry import Registered, Registry
    from clipclap_cli.store.feature_store import FeatureStore

    validate_adapter(adapter_cls)
    origin = adapter_origin(adapter_cls)
    with _folder(folder) as where:
        example = _run(origin, "example(folder)", lambda: adapter_cls.example(where / "example"))
        if example is None:
            raise SkipCheck("it offers no example(folder) to read; the registration alone was checked")
        table = {**example.table, "kind": adapter_cls.kind}
        only = Registry("dataset kind", {adapter_cls.kind: [Registered(adapter_cls.kind, adapter_cls, "check")]})
        entry = _run(origin, "its example's table",
                     lambda: build_entry("contract-check", table, f"{origin} example", only))
        adapter = adapter_cls(entry, entry.params)
        exercised = False
        if _overrides(adapter_cls, "load_features"):
            loaded = _run(origin, "load_features", lambda: adapter.load_features(example.root))
            bundle = check_bundle_form(adapter, loaded)
            store = FeatureStore(str(where / "store.zarr"))
            _run(origin, "importing its example", lambda: store_bundle(store, entry, bundle))
            exercised = True
        if _overrides(adapter_cls, "samples") and example.videos is not None:
            _check_samples(origin, adapter, example.videos)
            exercised = True
        if not exercised:
            raise ContractError(f"{origin}: its example gives nothing to read (root for load_features, videos "
                                "for samples)")


def _check_samples(origin: str, adapter: DatasetAdapter, videos: Path) -> None:
    samples = check_samples(adapter, _run(origin, "samples", lambda: adapter.samples(videos)))
    check_description(adapter, samples, _run(origin, "describe_samples", lambda: adapter.describe_samples(samples)))


def _overrides(cls: type, method: str) -> bool:
    return getattr(cls, method) is not getattr(DatasetAdapter, method)


@contextlib.contextmanager
def _folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="clipclap-check-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------- everything registered
def check_registered(pm=None, names: list[str] | None = None, plugins: set[str] | None = None) -> list[CheckResult]:
    """Run the checks on every registered format, encoder and head of `pm` (those called one of
    `names`, bare or `SOURCE:NAME`, or registered by one of `plugins`, when given)."""
    from clipclap_cli.plugins.registry import list_dataset_kinds, list_encoders, list_heads

    plan = [("dataset kind", list_dataset_kinds(pm), check_dataset_kind),
            ("encoder", list_encoders(pm), check_encoder),
            ("fusion head", list_heads(pm), check_head)]
    results, asked = [], set(names or ())
    for what, registry, check in plan:
        for r in registry:
            qualified = f"{r.source}:{r.name}"
            if asked and not asked & {r.name, qualified, *r.aliases}:
                continue
            if plugins is not None and r.plugin not in plugins:
                continue
            results.append(_result(what, r.name, r.plugin, lambda c=check, o=r.obj: c(o)))
    unknown = sorted(asked - {n for res in results for n in (res.name,)} - {q for q in _qualified(plan)})
    if unknown:
        raise ClipclapError(f"nothing registered is called {', '.join(map(repr, unknown))} (see `clipclap plugins`)")
    return results


def _qualified(plan) -> set[str]:
    return {name for _, registry, _ in plan for r in registry
            for name in (f"{r.source}:{r.name}", *r.aliases)}


def _result(what: str, name: str, plugin: str, check: Callable[[], None]) -> CheckResult:
    try:
        check()
    except SkipCheck as e:
        return CheckResult(what, name, plugin, "skip", str(e))
    except ClipclapError as e:
        return CheckResult(what, name, plugin, "fail", " ".join(str(e).split()))
    except Exception as e:  # whatever a plugin raises, the table names it
        return CheckResult(what, name, plugin, "fail", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
    return CheckResult(what, name, plugin, "pass")


def check_plugin(plugin: str | types.ModuleType | object, *, allow_skips: bool = True) -> list[CheckResult]:
    """Check everything one plugin registers, for a plugin author's test suite: `plugin` is the
    plugin object itself (a module with hook functions; it need not be installed), or the name
    of an installed entry point or distribution. Raises ContractError listing every failure
    (and every skip, with `allow_skips=False`); returns the results otherwise."""
    from clipclap_cli.plugins.manager import failures, make_plugin_manager

    if isinstance(plugin, str):
        pm = make_plugin_manager()
        from clipclap_cli.plugins.manager import distribution
        from clipclap_cli.plugins.registry import canonical_source

        wanted = canonical_source(plugin)
        mine = {name for name, _ in pm.list_name_plugin()
                if name == plugin or canonical_source((distribution(pm, name) or " ").split(" ")[0]) == wanted}
        label = plugin
    else:
        pm = make_plugin_manager(entrypoints=False)
        label = getattr(plugin, "__name__", type(plugin).__name__)
        pm.register(plugin, name=label)
        mine = {label}
    results = check_registered(pm, plugins=mine)
    broken = [f.line() for f in failures(pm) if f.plugin in mine and f.left_out]
    if not mine and not broken:
        raise ContractError(f"no plugin called {plugin!r} is installed (see `clipclap plugins`)")
    bad = broken + [f"{r.what} {r.name!r}: {r.status}: {r.reason}" for r in results
                    if r.status == "fail" or (r.status == "skip" and not allow_skips)]
    if bad:
        raise ContractError(f"plugin {label!r} breaks the clipclap contract:\n  " + "\n  ".join(bad))
    if not results:
        raise ContractError(f"plugin {label!r} registers no dataset kind, encoder or fusion head to check")
    return results
