"""Frame recipes: how `clipclap extract` picks a video's frame and turns it into the picture the
visual encoder sees. Data, not code: `resources/frame_recipes.toml` defines them (one per
released feature set, reproducing its script's steps, and `clean`); `extract/media.py` follows
them. docs/extraction.md says what each reproduces and how closely."""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import tomllib
from dataclasses import dataclass
from typing import Literal

from clipclap_cli.errors import ConfigError, UnknownNameError

DEFAULT = "clean"
"The recipe of datasets whose entry names none (your own videos)"


@dataclass(frozen=True)
class FrameRecipe:
    """One recipe (the keys are explained in resources/frame_recipes.toml)."""

    name: str
    description: str
    select: Literal["middle-time", "index"]
    count: Literal["container", "decoded"] | None = None
    index: Literal["half", "half-before"] | None = None
    missing: Literal["black", "fail"] = "fail"
    channels: Literal["rgb", "bgr"] = "rgb"
    pixels: Literal["as-decoded", "float-round-trip"] = "as-decoded"
    quarter_turns: Literal["upright", "opencv-4.6"] = "upright"
    "How a video turned by 90 or 270 degrees is turned back (resources/frame_recipes.toml)"
    source: str = ""
    "The reference script (and lines) the recipe reproduces"

    def chosen_index(self, count: int) -> int:
        """The 0-based index of the chosen frame among `count` frames (may be out of range)."""
        return count // 2 if self.index == "half" else count // 2 - 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {"select": ("middle-time", "index"), "count": ("container", "decoded", None),
            "index": ("half", "half-before", None), "missing": ("black", "fail"), "channels": ("rgb", "bgr"),
            "pixels": ("as-decoded", "float-round-trip"), "quarter_turns": ("upright", "opencv-4.6")}


@functools.cache
def recipes() -> dict[str, FrameRecipe]:
    """Every recipe, by name, checked."""
    text = (importlib.resources.files("clipclap_cli") / "resources" / "frame_recipes.toml").read_text()
    out = {}
    for name, table in tomllib.loads(text)["recipes"].items():
        try:
            recipe = FrameRecipe(name=name, **table)
        except TypeError as e:
            raise ConfigError(f"frame recipe {name!r}: {e}") from None
        for key, allowed in _CHOICES.items():
            if getattr(recipe, key) not in allowed:
                raise ConfigError(f"frame recipe {name!r}: {key} = {getattr(recipe, key)!r}, expected one of "
                                  f"{', '.join(a for a in allowed if a)}")
        if (recipe.select == "index") != (recipe.count is not None and recipe.index is not None):
            raise ConfigError(f"frame recipe {name!r}: select = 'index' goes with count and index, and only it")
        out[name] = recipe
    return out


def get_recipe(name: str) -> FrameRecipe:
    try:
        return recipes()[name]
    except KeyError:
        raise UnknownNameError("frame recipe", name, recipes(), "clipclap docs extraction") from None
