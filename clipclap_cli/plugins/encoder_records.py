"""Encoders built again from what features record about them.

`extract` records, with each feature array, the encoder that made it: its id, its parameters
(as strings, less the device) and its weights' identity (`Encoder.provenance`). Applying a
trained model to new videos, or to new class names, needs those encoders again: the same id and
parameters, on a device of this machine, with weights that are the recorded ones (`predict
--videos` compares their identity; `predict --classes` compares the label embeddings they give).
"""

from __future__ import annotations

from pathlib import Path

from clipclap_cli.errors import ClipclapError, UnknownNameError

LOCATION_PARAMS = ("checkpoint", "vocab")
"Encoder parameters that say where its files lie, not what they hold (that is in its weights' identity)"


class EncoderRecordError(ClipclapError):
    """The encoder a record names cannot be built here; the message says why."""


def recorded_encoder(record: dict, pm=None, device: str = "cpu", made: str = "the model's features"):
    """The encoder `record` names (`{"encoder": id, "params": {...}, ...}`, a feature array's
    provenance) with the parameters it records, or, recorded before parameters were, those its
    provenance names (`params_named`); on `device`. A recorded file that is not on this machine
    (a checkpoint where the features were made) is left to the encoder's default, its
    environment variable: the weights' identity, not their place, has to agree. `made` names
    what the record belongs to, in messages."""
    from clipclap_cli.params import build_params
    from clipclap_cli.plugins.registry import get_encoder

    name = str(record["encoder"])
    try:
        base = get_encoder(name, pm)
    except UnknownNameError as e:
        raise EncoderRecordError(f"{made} come from encoder {name!r}, which is not installed here (installed: "
                                 f"{', '.join(e.available) or 'none'}); install the plugin that provides it") from None
    cls = type(base)
    fields = cls.Params.__dataclass_fields__
    recorded = record.get("params")
    values = {k: v for k, v in (recorded if isinstance(recorded, dict) else params_named(record, fields)).items()
              if k in fields and k != "device" and not _elsewhere(k, v)}
    if "device" in fields:
        values["device"] = device
    return cls(build_params(cls.Params, values, where=f"encoder {name} (as {made} record it)"))


def params_named(record: dict, fields: dict) -> dict[str, str]:
    """For a record without its encoder's parameters: those of `fields` its provenance names
    (model, pretrained tag, random weights, dtype; the weights file as `checkpoint`)."""
    values = {k: record[k] for k in ("model", "pretrained", "random_weights", "dtype") if k in record and k in fields}
    if "checkpoint" in fields and record.get("weights_file"):
        values["checkpoint"] = record["weights_file"]
    return {k: str(v) for k, v in values.items()}


def _elsewhere(key: str, value: object) -> bool:
    """Whether a location parameter names a file this machine does not have."""
    return key in LOCATION_PARAMS and isinstance(value, str) and bool(value) and not Path(value).exists()
