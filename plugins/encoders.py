"""Built-in encoders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipclap_cli.api import Encoder, hookimpl


class RandomProjection(Encoder):
    """Deterministic random projection of raw numeric items; for tests and smoke runs."""

    encoder_id = "random-projection"
    modality = "audio"
    dim = 16
    description = "Fixed random projection of raw samples (tests, smoke runs)"

    @dataclass(frozen=True)
    class Params:
        seed: int = 0
        "Seed of the projection matrix"

    def __init__(self, params: RandomProjection.Params | None = None):
        super().__init__(params)
        self._matrix: dict[int, np.ndarray] = {}

    def encode_batch(self, items):
        x = np.stack([np.asarray(i, dtype=np.float32).reshape(-1) for i in items])
        width = x.shape[1]
        if width not in self._matrix:
            rng = np.random.default_rng([self.params.seed, width])
            self._matrix[width] = (rng.standard_normal((width, self.dim)) / np.sqrt(width)).astype(np.float32)
        return x @ self._matrix[width]


@hookimpl
def register_encoders(register):
    from .encoders_clap import ClapEncoder  # these import no torch until weights are needed
    from .encoders_clip import ClipEncoder
    from .encoders_demo import DemoText  # the demo benchmark's text model (numpy only)

    register(RandomProjection())
    register(ClipEncoder())
    register(ClapEncoder())
    register(DemoText())
