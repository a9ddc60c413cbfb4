"""CLAP (WavCaps HTSAT-BERT) audio features: the audio embedding of a 10 s, 32 kHz mono clip.

Weights: `checkpoint=PATH` (or CLIPCLAP_CLAP_CHECKPOINT), the published
`HTSAT_BERT_zero_shot.pt` from the WavCaps repository (a torch file holding the state dict,
possibly under "model"), read with `weights_only=True` and loaded by its own key names.
Without one it refuses to run unless `random_weights=true` asks for untrained weights (smoke runs,
benchmarks). `size=tiny` is a reduced HTS-AT with random weights for tests and smoke runs.

The text branch (for `clipclap embed --encoder clap`) is WavCaps' BERT (bert-base-uncased, no
pooler) whose [CLS] output goes through text_proj and is L2-normalised. It needs the optional
`transformers` package and a local BERT `vocab.txt` (`vocab=PATH` or CLIPCLAP_BERT_VOCAB); its
weights come from the same checkpoint (`text_encoder.text_encoder.*`, `text_proj.*`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from clipclap_cli.api import Encoder, need
from clipclap_plugins.encoders_provenance import file_sha256, package_versions

from .encoders_clip import EncoderError, _autocast

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), embed_size=32)
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


class ClapEncoder(Encoder):
    """WavCaps CLAP audio embedding (HTS-AT + projection, L2-normalised)."""

    encoder_id = "clap"
    modality = "audio"
    dim = 1024
    batch_size = 16
    description = "WavCaps CLAP (HTS-AT) audio embedding of a 10 s clip at 32 kHz"

    contract_params: ClassVar[dict[str, str]] = {"size": "tiny"}
    "What the contract kit builds it with: the tiny random-weight model (no weights needed)"

    @dataclass(frozen=True)
    class Params:
        size: Literal["full", "tiny"] = "full"
        "full = the published HTS-AT (embedding 1024); tiny = a small random-weight model (tests)"
        checkpoint: str = ""
        "HTSAT_BERT_zero_shot.pt (default: $CLIPCLAP_CLAP_CHECKPOINT)"
        random_weights: bool = False
        "Run without a checkpoint, randomly initialised (smoke runs, benchmarks); size=tiny always is"
        device: str = "cpu"
        "Where the model runs"
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
        "Inference precision (bf16/fp16 under torch.autocast; outputs are float32)"
        vocab: str = ""
        "BERT vocab.txt for the text branch (default: $CLIPCLAP_BERT_VOCAB)"

    def __init__(self, params: ClapEncoder.Params | None = None):
        super().__init__(params)
        self.dim = TINY["embed_size"] if self.params.size == "tiny" else 1024
        self._model = self._text = None

    def provenance(self) -> dict:
        p, checkpoint = self.params, self._checkpoint()
        return {"model": f"WavCaps HTS-AT ({p.size})", "weights_file": checkpoint or "",
                "weights_sha256": file_sha256(checkpoint) if checkpoint else "", "random_weights": checkpoint is None,
                "dtype": p.dtype, "versions": package_versions("torch", "av")}

    def _checkpoint(self) -> str | None:
        """The checkpoint path, or None for random weights (only when allowed)."""
        checkpoint = self.params.checkpoint or os.environ.get("CLIPCLAP_CLAP_CHECKPOINT", "")
        where = "HTSAT_BERT_zero_shot.pt from github.com/XinhaoMei/WavCaps, retrieval pretrained models"
        if checkpoint and not Path(checkpoint).is_file():
            raise EncoderError(f"CLAP checkpoint {checkpoint}: no such file ({where})")
        if not checkpoint and not (self.params.random_weights or self.params.size == "tiny"):
            raise EncoderError(f"CLAP has no weights: pass checkpoint=PATH ({where}) or set CLIPCLAP_CLAP_CHECKPOINT; "
                               "random_weights=true runs it untrained (smoke runs)")
        return checkpoint or None

    def check_weights(self) -> None:
        self._checkpoint()

    def _checkpoint_state(self, torch) -> dict | None:
        checkpoint = self._checkpoint()
        if checkpoint is None:
            return None
        from clipclap_cli.api import torch_load_failure

        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # a refused pickle or a corrupt file
            raise EncoderError(f"CLAP checkpoint {checkpoint}: {torch_load_failure(checkpoint, e)}") from None
        return state.get("model", state) if isinstance(state, dict) else state

    def _load(self):
        if self._model is not None:
            return
        import torch

        from .clap_htsat import ClapAudio, HtsatConfig

        self.check_weights()  # before building the model, which takes seconds at full size
        cfg = HtsatConfig(**TINY) if self.params.size == "tiny" else HtsatConfig()
        with torch.random.fork_rng():
            torch.manual_seed(0)  # random weights (no checkpoint) are the same on every run
            model = ClapAudio(cfg)
        state = self._checkpoint_state(torch)
        if state is not None:
            try:
                model.load_reference(state)
            except (KeyError, RuntimeError) as e:
                raise EncoderError(f"CLAP checkpoint does not fit size={self.params.size}: {str(e)[:200]}") from None
        self._model = model.eval().to(self.params.device)
        self._torch = torch

    def encode_batch(self, items: list[np.ndarray]) -> np.ndarray:
        """items: mono float32 waveforms of 320,000 samples (10 s at 32 kHz)."""
        self._load()
        torch = self._torch
        wave = torch.from_numpy(np.stack(items).astype(np.float32)).to(self.params.device)
        with torch.no_grad(), _autocast(torch, self.params):
            return self._model(wave).float().cpu().numpy()

    # ------------------------------------------------------------------ text branch
    def _load_text(self):
        if self._text is not None:
            return
        import inspect

        import torch
        from torch import nn

        bert = need("transformers", "extract", "the CLAP text encoder")
        BertConfig, BertModel, BertTokenizer = bert.BertConfig, bert.BertModel, bert.BertTokenizer
        vocab = self.params.vocab or os.environ.get("CLIPCLAP_BERT_VOCAB", "")
        if not vocab or not Path(vocab).is_file():
            raise EncoderError(f"CLAP text: BERT vocab.txt {vocab!r} not found (vocab.txt of bert-base-uncased "
                               "from huggingface.co; pass -e vocab=PATH or set CLIPCLAP_BERT_VOCAB)")
        key = "vocab_file" if "vocab_file" in inspect.signature(BertTokenizer.__init__).parameters else "vocab"
        tokenizer = BertTokenizer(**{key: vocab}, do_lower_case=True)
        words = sum(1 for line in Path(vocab).read_text(encoding="utf-8").splitlines() if line)
        tiny = self.params.size == "tiny"
        config = BertConfig(vocab_size=words, **TINY_BERT) if tiny else BertConfig()
        embed_size = TINY["embed_size"] if tiny else 1024
        with torch.random.fork_rng():
            torch.manual_seed(0)
            text = nn.Module()
            text.text_encoder = nn.Module()
            text.text_encoder.text_encoder = BertModel(config, add_pooling_layer=False)
            text.text_proj = nn.Sequential(nn.Linear(config.hidden_size, embed_size), nn.ReLU(),
                                           nn.Linear(embed_size, embed_size))
        state = self._checkpoint_state(torch)
        if state is not None:
            from .clap_htsat import load_by_key_names

            try:
                load_by_key_names(text, state)
            except (KeyError, RuntimeError) as e:
                raise EncoderError(f"CLAP checkpoint does not fit the text branch: {str(e)[:200]}") from None
        self._text, self._tokenizer, self._torch = text.eval().to(self.params.device), tokenizer, torch

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings: [CLS] of BERT (longest padding, at most 30 tokens) -> text_proj."""
        self._load_text()
        torch = self._torch
        tokens = self._tokenizer(prompts, padding="longest", truncation=True, max_length=30, return_tensors="pt")
        with torch.no_grad():
            hidden = self._text.text_encoder.text_encoder(input_ids=tokens["input_ids"].to(self.params.device),
                                                          attention_mask=tokens["attention_mask"].to(self.params.device))[0]
            emb = torch.nn.functional.normalize(self._text.text_proj(hidden[:, 0]), dim=-1)
        return emb.float().cpu().numpy()

    def label_embedding(self, prompts: list[str]) -> np.ndarray:
        """SPEC.md: average the prompt embeddings, L2-normalise."""
        mean = self.encode_text(prompts).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)
