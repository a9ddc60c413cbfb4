"""CLAP (WavCaps HTSAT-BERT) audio features: the audio embedding of a 10 s, 32 kHz mono clip.

Weights: `checkpoint=PATH` (or CLIPCLAP_CLAP_CHECKPOINT), the published
`HTSAT_BERT_zero_shot.pt` from the WavCaps repository (a torch file holding the state dict,
possibly under "model"), read with `weights_only=True` and loaded by its own key names.
`size=tiny` is a reduced HTS-AT with random weights for tests and smoke runs.
The BERT text branch is not built yet (label embeddings come from the released files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clipclap_cli import Encoder

from .encoders_clip import EncoderError, _autocast

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), embed_size=32)


class ClapEncoder(Encoder):
    """WavCaps CLAP audio embedding (HTS-AT + projection, L2-normalised)."""

    encoder_id = "clap"
    modality = "audio"
    dim = 1024
    batch_size = 16
    description = "WavCaps CLAP (HTS-AT) audio embedding of a 10 s clip at 32 kHz"

    @dataclass(frozen=True)
    class Params:
        size: Literal["full", "tiny"] = "full"
        "full = the published HTS-AT (embedding 1024); tiny = a small random-weight model (tests)"
        checkpoint: str = ""
        "HTSAT_BERT_zero_shot.pt (default: $CLIPCLAP_CLAP_CHECKPOINT); empty = random weights"
        device: str = "cpu"
        "Where the model runs"
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
        "Inference precision (bf16/fp16 under torch.autocast; outputs are float32)"

    def __init__(self, params: "ClapEncoder.Params | None" = None):
        self.params = params or self.Params()
        self.dim = TINY["embed_size"] if self.params.size == "tiny" else 1024
        self._model = None

    def _load(self):
        if self._model is not None:
            return
        import torch

        from .clap_htsat import ClapAudio, HtsatConfig

        cfg = HtsatConfig(**TINY) if self.params.size == "tiny" else HtsatConfig()
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random weights (no checkpoint) are the same on every run
            model = ClapAudio(cfg)
        checkpoint = self.params.checkpoint or os.environ.get("CLIPCLAP_CLAP_CHECKPOINT", "")
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise EncoderError(f"CLAP checkpoint {checkpoint}: no such file (HTSAT_BERT_zero_shot.pt from "
                                   "github.com/XinhaoMei/WavCaps, retrieval pretrained models)")
            try:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - refused pickle or corrupt file
                raise EncoderError(f"CLAP checkpoint {checkpoint}: not loadable ({type(e).__name__})") from None
            state = state.get("model", state) if isinstance(state, dict) else state
            try:
                model.load_reference(state)
            except (KeyError, RuntimeError) as e:
                raise EncoderError(f"CLAP checkpoint {checkpoint} does not fit size={self.params.size}: "
                                   f"{str(e)[:200]}") from None
        self._model = model.eval().to(self.params.device)
        self._torch = torch

    def encode_batch(self, items: list[np.ndarray]) -> np.ndarray:
        """items: mono float32 waveforms of 320,000 samples (10 s at 32 kHz)."""
        self._load()
        torch = self._torch
        wave = torch.from_numpy(np.stack(items).astype(np.float32)).to(self.params.device)
        with torch.no_grad(), _autocast(torch, self.params):
            return self._model(wave).float().cpu().numpy()
