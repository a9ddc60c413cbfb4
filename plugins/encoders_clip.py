"""CLIP through open_clip: image features of video frames and text features of prompts.

Weights come from a local file (`checkpoint=PATH`, or CLIPCLAP_CLIP_CHECKPOINT): an open_clip
state dict such as `open_clip_pytorch_model.bin` of timm/vit_base_patch32_clip_224.openai (the
OpenAI ViT-B/32 the released features used; its architecture is the `ViT-B-32-quickgelu`
config, the default). A named pretrained tag (`pretrained=openai`) needs downloads, allowed
only with `allow_download=true`; otherwise it fails at once, naming the file to get.
Without either, it refuses to run unless `random_weights=true` asks for untrained weights (smoke
runs, benchmarks), so that a forgotten checkpoint cannot fill a store with meaningless features.
`model=clipclap-tiny-clip` is a tiny random-weight configuration for tests and smoke runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from clipclap_cli.api import ClipclapError, Encoder, need
from clipclap_plugins.encoders_provenance import file_sha256, package_versions

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
"""open_clip model configs that ship with clipclap: the released features' ViT-B-32-quickgelu (so
its width is known without open_clip installed) and the tiny test models"""
TINY_PREFIX = "clipclap-tiny"
"Test models, random by design; every other model needs weights (or random_weights=true)"


class EncoderError(ClipclapError):
    """An encoder cannot be built (missing weights, unknown model, downloads not allowed)."""


def _open_clip():
    open_clip = need("open_clip", "extract", "the CLIP encoder")

    if str(CONFIG_DIR) not in map(str, getattr(open_clip.factory, "_MODEL_CONFIG_PATHS", [])):
        open_clip.add_model_config(CONFIG_DIR)
    return open_clip


@contextlib.contextmanager
def _without_log(prefix: str):
    """Drop the root logger's records that start with `prefix` (open_clip logs through it)."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _autocast(torch, params):
    """torch.autocast for bf16/fp16 inference; a no-op context for fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(params.dtype)
    return torch.autocast(torch.device(params.device).type, dtype=dtype, enabled=dtype is not None)


def _embed_dim(model: str) -> int:
    import importlib.util
    import json

    spec = importlib.util.find_spec("open_clip")
    if spec is None and not (CONFIG_DIR / f"{model}.json").is_file():
        need("open_clip", "extract", "the CLIP encoder")  # says which extra brings it
    folders = [CONFIG_DIR] + ([Path(p) / "model_configs" for p in spec.submodule_search_locations] if spec else [])
    for folder in folders:
        if (folder / f"{model}.json").is_file():
            return int(json.loads((folder / f"{model}.json").read_text())["embed_dim"])
    raise EncoderError(f"unknown open_clip model {model!r} (see open_clip.list_models(); "
                       "tiny test model: clipclap-tiny-clip)")


class ClipEncoder(Encoder):
    """CLIP image embedding of the middle frame (or the mean of N evenly spaced frames, with
    `extract --frames N`), preprocessed as open_clip does, L2-normalised. Text:
    `encode_text(prompts)`, L2-normalised."""

    encoder_id = "clip"
    modality = "video"
    dim = 512
    batch_size = 64
    description = "CLIP (open_clip) image features of video frames; text features of prompts"

    contract_params: ClassVar[dict[str, str]] = {"model": "clipclap-tiny-clip"}
    "What the contract kit builds it with: the tiny random-weight model (no weights needed)"

    @dataclass(frozen=True)
    class Params:
        model: str = "ViT-B-32-quickgelu"
        "open_clip model name (the OpenAI ViT-B/32 weights need the quickgelu config)"
        checkpoint: str = ""
        "Local weights file (default: $CLIPCLAP_CLIP_CHECKPOINT)"
        pretrained: str = ""
        "A named open_clip pretrained tag (downloads; needs allow_download=true)"
        allow_download: bool = False
        "Allow open_clip / Hugging Face downloads for a named tag"
        random_weights: bool = False
        "Run without weights, randomly initialised (smoke runs, benchmarks); tiny models always are"
        device: str = "cpu"
        "Where the model runs"
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
        "Inference precision (bf16/fp16 under torch.autocast; outputs are float32)"

    def __init__(self, params: ClipEncoder.Params | None = None):
        super().__init__(params)
        self._model = self._preprocess = self._tokenizer = None
        self.dim = _embed_dim(self.params.model)  # from the config file: no torch import here

    def _weights(self) -> str | None:
        """Where the weights come from: a checkpoint path, a pretrained tag, or None (random)."""
        p = self.params
        checkpoint = p.checkpoint or os.environ.get("CLIPCLAP_CLIP_CHECKPOINT", "")
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise EncoderError(f"CLIP checkpoint {checkpoint}: no such file")
            return checkpoint
        if p.pretrained:
            if not p.allow_download:
                raise EncoderError(self._download_hint(_open_clip()))
            return p.pretrained
        if not (p.random_weights or p.model.startswith(TINY_PREFIX)):
            raise EncoderError(f"CLIP {p.model} has no weights: pass checkpoint=PATH (open_clip_pytorch_model.bin "
                               "of timm/vit_base_patch32_clip_224.openai on huggingface.co) or set "
                               "CLIPCLAP_CLIP_CHECKPOINT; random_weights=true runs it untrained (smoke runs)")
        return None

    def provenance(self) -> dict:
        p, weights = self.params, self._weights()
        is_file = weights is not None and Path(weights).is_file()
        return {"model": p.model, "pretrained": "" if is_file else (weights or ""),
                "weights_file": weights if is_file else "", "weights_sha256": file_sha256(weights) if is_file else "",
                "random_weights": weights is None, "dtype": p.dtype,
                "versions": package_versions("torch", "open_clip_torch", "av")}

    def check_weights(self) -> None:
        self._weights()
        if importlib.util.find_spec("open_clip") is None:  # a missing extra fails now too, before any work
            need("open_clip", "extract", "the CLIP encoder")

    def _load(self):
        if self._model is not None:
            return
        import torch

        open_clip = _open_clip()
        p = self.params
        pretrained = self._weights()
        if not p.allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"  # never hang in download retries
        try:
            with torch.random.fork_rng():
                torch.manual_seed(0)  # random weights (no checkpoint) are the same on every run
                with _without_log("No pretrained weights loaded"):  # random weights were asked for
                    model, _, preprocess = open_clip.create_model_and_transforms(p.model, pretrained=pretrained,
                                                                                 device=p.device)
        except (RuntimeError, KeyError, ValueError) as e:
            raise EncoderError(f"cannot load CLIP {p.model!r} from {pretrained}: {str(e)[:200]}") from None
        model.eval()
        self._model, self._preprocess = model, preprocess
        self._tokenizer = open_clip.get_tokenizer(p.model)
        self._torch = torch

    def _download_hint(self, open_clip) -> str:
        p = self.params
        cfg = open_clip.get_pretrained_cfg(p.model, p.pretrained) or {}
        where = (f"`{cfg.get('hf_hub', '').rstrip('/')}` on huggingface.co (file open_clip_pytorch_model.bin)"
                 if cfg.get("hf_hub") else cfg.get("url", "the open_clip model zoo"))
        return (f"CLIP {p.model} pretrained={p.pretrained!r} needs a download, which is off: get the weights from "
                f"{where}, then pass -e checkpoint=PATH (or set CLIPCLAP_CLIP_CHECKPOINT); "
                "or allow downloads with -e allow_download=true")

    def model_input(self, pictures: list[np.ndarray]):
        """The model's input for uint8 (H, W, 3) pictures: open_clip's preprocessing of each as a
        PIL image (resize, centre crop, normalise), stacked: (len, 3, S, S)."""
        Image = need("PIL.Image", "extract", "the CLIP encoder")

        self._load()
        return self._torch.stack([self._preprocess(Image.fromarray(picture)) for picture in pictures])

    def encode_batch(self, items: list[np.ndarray]) -> np.ndarray:
        """items: uint8 frames per video, (frames, H, W, 3) or (H, W, 3), as the frame recipe made them."""
        self._load()
        torch = self._torch
        per_video = [it if it.ndim == 4 else it[None] for it in items]
        images = self.model_input([f for frames in per_video for f in frames])
        with torch.no_grad(), _autocast(torch, self.params):
            emb = torch.nn.functional.normalize(self._model.encode_image(images.to(self.params.device)).float(), dim=-1)
        counts = [len(f) for f in per_video]
        out = torch.stack([chunk.mean(0) for chunk in emb.split(counts)])
        return torch.nn.functional.normalize(out, dim=-1).cpu().numpy().astype(np.float32)

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings (P, dim)."""
        self._load()
        torch = self._torch
        with torch.no_grad():
            emb = self._model.encode_text(self._tokenizer(prompts).to(self.params.device)).float()
        return torch.nn.functional.normalize(emb, dim=-1).cpu().numpy().astype(np.float32)

    def label_embedding(self, prompts: list[str]) -> np.ndarray:
        """SPEC.md: normalise each prompt's embedding, average, normalise."""
        mean = self.encode_text(prompts).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)
