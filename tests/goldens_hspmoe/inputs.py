"""The fixed inputs and initial weights of the HSP-MoE goldens, drawn from numpy's PCG64 streams
so that the goldens store only numbers their code computed (README.md here says how)."""

from __future__ import annotations

import numpy as np

N, CLASSES, SEEN, EVAL_N, STEPS = 32, 12, 8, 96, 3
WIDTHS = {"video": 512, "audio": 1024, "clip": 512, "clap": 1024}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def golden_inputs(seed: int = 2026) -> dict[str, np.ndarray]:
    """Label-space features: a class's video lies near its CLIP text embedding, its audio near its
    CLAP one (a shared latent, one map per encoder, noise and a modality offset), as on the demo.
    `class_text` is [CLIP 512 | CLAP 1024] per class; classes 0-7 train (seen), 8-11 are unseen."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((CLASSES, 48))
    maps = {k: rng.standard_normal((48, WIDTHS[k])) for k in ("clip", "clap")}
    gap = {k: 0.5 * rng.standard_normal(WIDTHS[k]) for k in ("clip", "clap")}
    class_text = np.concatenate((_unit(latent @ maps["clip"]), _unit(latent @ maps["clap"])), axis=1)

    def samples(labels):
        z = latent[labels] + 3.0 * rng.standard_normal((len(labels), 48))
        return _unit(z @ maps["clap"] + gap["clap"]), _unit(z @ maps["clip"] + gap["clip"])

    out = {"class_text": class_text, "labels": np.arange(N) % SEEN}
    out["audio"], out["video"] = samples(out["labels"])
    for step in range(1, STEPS + 1):
        out[f"step{step}_labels"] = rng.integers(0, SEEN, N)
        out[f"step{step}_audio"], out[f"step{step}_video"] = samples(out[f"step{step}_labels"])
    out["eval_labels"] = np.arange(EVAL_N) % CLASSES
    out["eval_audio"], out["eval_video"] = samples(out["eval_labels"])
    return out


def golden_state(shapes: dict[str, tuple[int, ...]], seed: int = 7) -> dict[str, np.ndarray]:
    """Initial weights for every state-dict entry, in sorted-name order: weight matrices
    N(0, 1/fan_in), biases N(0, 0.02^2), norm scales 1 + N(0, 0.05^2), norm shifts N(0, 0.05^2),
    batch-norm running means N(0, 0.1^2) and variances U(0.5, 1.5) (away from 0/1, so that eval
    mode is tested on real statistics)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("num_batches_tracked"):
            state[name] = np.zeros(shape, dtype=np.int64)
            continue
        if name.endswith("running_mean"):
            x = 0.1 * rng.standard_normal(shape)
        elif name.endswith("running_var"):
            x = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("weight") and len(shape) == 2:
            x = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif name.endswith("weight"):
            x = 1.0 + 0.05 * rng.standard_normal(shape)
        elif _is_batch_norm_bias(name, shapes):
            x = 0.05 * rng.standard_normal(shape)
        else:
            x = 0.02 * rng.standard_normal(shape)
        state[name] = x.astype(np.float32)
    return state


def _is_batch_norm_bias(name: str, shapes) -> bool:
    """A bias of a batch norm (it has running statistics beside it)."""
    return name.endswith("bias") and name[: -len("bias")] + "running_mean" in shapes
