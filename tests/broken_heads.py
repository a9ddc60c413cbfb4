"""Fusion heads broken the way real ones break: each is the ClipClap head with one method
replaced, and the start of what the contract check says came instead. The trainer
(tests/test_plugin_faults.py) and the contract kit (tests/test_contract_kit.py) must both refuse
each with that message: they share one check (clipclap_cli/plugins/contracts.py)."""

from __future__ import annotations


def broken_head(**overrides):
    """The clipclap head with one method replaced by a broken one."""
    from clipclap_plugins.clipclap_head import ClipClapHead

    return type("BrokenHead", (ClipClapHead,), {"head_id": "broken-head", **overrides})


def _distances_of_shape(shape_of):
    def distances(self, audio, video, class_text):
        import torch

        return {"both": torch.zeros(shape_of(len(audio), len(class_text)))}
    return distances


BROKEN_HEADS = {
    "distances (N, 1)": ({"distances": _distances_of_shape(lambda n, c: (n, 1))}, "distances['both'] is a "
                         "torch.float32 tensor of shape"),
    "distances transposed": ({"distances": _distances_of_shape(lambda n, c: (c, n))}, "distances['both'] is a"),
    "distances NaN": ({"distances": lambda self, a, v, t: {"both": __import__("torch").full((len(a), len(t)),
                                                                                          float("nan"))}},
                      "distances['both'] holds NaN or infinite values"),
    "no both": ({"distances": lambda self, a, v, t: {"audio": __import__("torch").zeros(len(a), len(t))}},
                "a dict with keys ['audio']"),
    "per-sample loss": ({"loss": lambda self, batch, text: (batch.audio.sum(dim=1), {})},
                        "total is a torch.float32 tensor of shape ("),
    "detached loss": ({"loss": lambda self, batch, text: (batch.audio.sum() * 0, {})}, "total has no gradient"),
    "not a tuple": ({"loss": lambda self, batch, text: batch.audio.sum()}, "came: a torch.float32 tensor of shape ()"),
}


