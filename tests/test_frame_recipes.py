"""Extraction that reproduces the released features (issue "Extraction that reproduces the
released features"): each released feature set's frame recipe gives, on generated videos, the
very picture its reference script gave, rebuilt here independently with the script's own
libraries and steps (OpenCV decoding, torch, torchvision's ToPILImage, CLIP's preprocessing);
the clean recipe takes the frame on screen at the middle, in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from clipclap_cli.extract.media import recipe_frames
from clipclap_cli.frame_recipes import get_recipe, recipes

cv2 = pytest.importorskip("cv2", reason="the reference scripts' decoder: pip install opencv-python-headless")
from PIL import Image  # noqa: E402 - after the skip: the reference's pictures
from torchvision import transforms  # noqa: E402 - after the skip: the reference's preprocessing

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def write_textured(path: Path, frames: int, fps: int, size=(64, 48), codec="mpeg4", pts=None,
                   rotation: int = 0) -> Path:
    """Blocks of random colour (chroma that interpolation would show), a ramp over time in the
    first channel; `pts` gives each frame's timestamp in 1/fps units (a variable frame rate);
    `rotation` (degrees, counter-clockwise) is written as the container's display matrix, as
    phones record portrait video."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if rotation:
        stream.set_display_rotation(rotation)
    rng = np.random.default_rng(frames)
    for i in range(frames):
        img = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        img[..., 0] = 5 * i
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = pts[i], Fraction(1, fps)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


# one pytest-xdist worker runs them all: they share the module's videos and ViT-B/32
pytestmark = pytest.mark.xdist_group("frame-recipes")
VIDEOS = {"odd frames, mpeg4": dict(frames=23, fps=15), "even frames, h264": dict(frames=24, fps=15, codec="libx264"),
          "longer, 10 fps": dict(frames=31, fps=10, size=(96, 72)),
          "rotated 90 degrees": dict(frames=22, fps=15, size=(64, 48), rotation=90),
          "rotated 180 degrees": dict(frames=21, fps=15, size=(64, 48), rotation=180, codec="libx264")}


@pytest.fixture(scope="module", params=sorted(VIDEOS))
def video(request, tmp_path_factory) -> Path:
    return write_textured(tmp_path_factory.mktemp("recipes") / "v.mp4", **VIDEOS[request.param])


# --- the reference scripts' steps, as they wrote them ---------------------------------------------
def ucf_reference(path: Path):
    """get_clip_features_ucf.py: every frame into a float32 buffer of CAP_PROP_FRAME_COUNT frames,
    the frame at count // 2, permuted to CHW and passed to ToPILImage as a float tensor."""
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    height, width = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    video = torch.zeros((count, height, width, 3), dtype=torch.float32)
    fc, ret = 0, True
    while fc < count and ret:
        ret, image = cap.read()
        if ret:
            video[fc] = torch.from_numpy(image)
            fc += 1
    frame = video[video.shape[0] // 2].permute(2, 0, 1)
    return transforms.ToPILImage()(frame)


def vggsound_reference(path: Path):
    """get_clip_features_vggsound.py (and _activitynet.py): a first pass counts the decoded frames,
    the second stops at the (count // 2)-th, counted from 1; uint8 to ToPILImage."""
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fc, ret = 0, True
    while fc < count and ret:
        ret, _ = cap.read()
        if ret:
            fc += 1
    middle = fc // 2
    cap = cv2.VideoCapture(str(path))
    fc, ret = 0, True
    while fc < count and ret:
        ret, image = cap.read()
        if ret:
            fc += 1
            if fc == middle:
                return transforms.ToPILImage()(torch.from_numpy(image).permute(2, 0, 1))
    raise AssertionError("the reference reached no frame")


def quarter_turned(path: Path) -> bool:
    """Whether the video's display matrix turns it by 90 or 270 degrees."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return round((frame.rotation or 0) / 90) % 2 == 1


PINNED_OPENCV_TURNS_BACK = tuple(int(v) for v in cv2.__version__.split(".")[:2]) != (4, 6)
"""The scripts pinned opencv-python 4.6.0.66, which turns quarter-turn videos the wrong way round (a
regression of 4.6.0, opencv/opencv#22088; measured against 4.6.0.66 here: its picture is the fixed
OpenCV's turned 180 degrees). With any other OpenCV the test turns the reference back to 4.6's."""


def as_the_scripts_opencv(reference):
    """A reference script rebuilt with the installed OpenCV, giving the picture the pinned 4.6.0.66 gave."""
    def picture(path: Path):
        image = reference(path)
        if PINNED_OPENCV_TURNS_BACK and quarter_turned(path):
            image = image.transpose(Image.Transpose.ROTATE_180)
        return image

    return picture


REFERENCES = {"ucf-released": as_the_scripts_opencv(ucf_reference),
              "vggsound-released": as_the_scripts_opencv(vggsound_reference),
              "activitynet-released": as_the_scripts_opencv(vggsound_reference)}


def openai_preprocess():
    """openai/CLIP's `_transform(224)`, the scripts' `preprocess`."""
    return transforms.Compose([transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.CenterCrop(224), lambda image: image.convert("RGB"), transforms.ToTensor(),
                               transforms.Normalize(CLIP_MEAN, CLIP_STD)])


# --- agreement ------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", sorted(REFERENCES))
def test_each_released_recipe_gives_its_scripts_picture_exactly(video, recipe):
    ours = recipe_frames(video, get_recipe(recipe))
    reference = np.asarray(REFERENCES[recipe](video))
    assert ours.shape == (1, *reference.shape) and ours.dtype == np.uint8
    assert np.array_equal(ours[0], reference), np.abs(ours[0].astype(int) - reference).max()


@pytest.mark.parametrize("rotation", [90, 270])
def test_a_portrait_video_is_turned_as_each_recipe_says(tmp_path, rotation):
    """A phone's portrait video: 64x48 pictures with a display matrix of a quarter turn. `clean`
    turns it upright, as OpenCV does from 4.7 on (and did before 4.6); the released recipes turn it
    as the scripts' OpenCV 4.6.0.66 did, the other way round: the two pictures are each other
    turned 180 degrees, and both 48 wide."""
    path = write_textured(tmp_path / "r.mp4", frames=20, fps=15, size=(64, 48), rotation=rotation)
    released = recipe_frames(path, get_recipe("vggsound-released"))[0]
    assert released.shape == (64, 48, 3)
    assert np.array_equal(released, np.asarray(REFERENCES["vggsound-released"](path)))
    if PINNED_OPENCV_TURNS_BACK:  # a fixed OpenCV here: it gives the upright picture
        assert np.array_equal(np.rot90(released, 2), np.asarray(vggsound_reference(path)))
    assert get_recipe("vggsound-released").quarter_turns == "opencv-4.6"
    assert get_recipe("clean").quarter_turns == "upright"
    assert recipe_frames(path, get_recipe("clean")).shape == (1, 64, 48, 3)


def test_the_ucf_script_inverted_its_frames_and_the_recipe_says_so(video):
    """ToPILImage multiplies a float tensor by 255 and casts to uint8, which wraps: the UCF script's
    0-255 floats came out as (256 - v) mod 256, in BGR."""
    cap = cv2.VideoCapture(str(video))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = [cap.read()[1] for _ in range(count)]
    bgr = frames[count // 2]
    assert np.array_equal(np.asarray(ucf_reference(video)), ((256 - bgr.astype(int)) % 256).astype(np.uint8))
    assert get_recipe("ucf-released").channels == "bgr" and get_recipe("ucf-released").pixels == "float-round-trip"


@pytest.fixture(scope="module")
def vit_b32():
    """clipclap's CLIP encoder for the released features' model (random weights: the
    preprocessing, not the weights, is under test), and the tiny model for features."""
    from clipclap_plugins.encoders_clip import ClipEncoder

    return (ClipEncoder(ClipEncoder.Params(model="ViT-B-32-quickgelu", random_weights=True)),
            ClipEncoder(ClipEncoder.Params(model="clipclap-tiny-clip")))


@pytest.mark.parametrize("recipe", sorted(REFERENCES))
def test_the_model_input_and_features_match_the_scripts(video, recipe, vit_b32):
    full, tiny = vit_b32
    ours = recipe_frames(video, get_recipe(recipe))
    reference = REFERENCES[recipe](video)
    ours_input = full.model_input([ours[0]])
    assert ours_input.shape == (1, 3, 224, 224)
    assert torch.equal(ours_input, openai_preprocess()(reference)[None])
    reference_input = tiny.model_input([np.asarray(reference)])  # the tiny model's own preprocessing
    with torch.no_grad():
        expected = torch.nn.functional.normalize(tiny._model.encode_image(reference_input), dim=-1).numpy()
    # equal up to the rounding of encode_batch's second normalisation (of the mean over a video's frames)
    np.testing.assert_allclose(tiny.encode_batch([ours]), expected, rtol=0, atol=1e-6)


# --- the clean recipe -----------------------------------------------------------------------------
def on_screen_at_middle(path: Path) -> int:
    """Independently: every frame's timestamp, and the index of the last one at or before
    start + duration / 2, in rationals."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = [frame.pts for frame in container.decode(stream)]
        start = stream.start_time or 0
        duration = (Fraction(stream.duration) if stream.duration
                    else Fraction(container.duration, 10**6) / stream.time_base)
    middle = start + duration / 2
    return max(i for i, pts in enumerate(stamps) if pts <= middle)


@pytest.mark.parametrize("frames, fps, pts", [(24, 15, None), (23, 15, None), (20, 10, None),
                                              (12, 10, [0, 1, 2, 5, 6, 7, 8, 14, 15, 16, 17, 18])])
def test_the_clean_recipe_takes_the_frame_on_screen_at_the_middle(tmp_path, frames, fps, pts):
    """24 frames at 15 fps: the middle, 0.8 s, is frame 12's timestamp exactly (a float reading put
    it after, and took frame 13). The last case has a variable frame rate."""
    path = write_textured(tmp_path / "v.mp4", frames, fps, pts=pts)
    index = on_screen_at_middle(path)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    assert np.array_equal(recipe_frames(path, get_recipe("clean"))[0], decoded[index])
    if pts is None and frames == 24:
        assert index == 12


def test_every_benchmark_names_the_recipe_of_its_released_features(pm):
    from clipclap_cli.data.datasets_toml import load_catalog

    catalog = load_catalog(pm)
    assert {name: catalog.get(name).frame_recipe for name in ("ucf", "vggsound", "activitynet", "demo")} == {
        "ucf": "ucf-released", "vggsound": "vggsound-released", "activitynet": "activitynet-released",
        "demo": "clean"}
    assert set(recipes()) == {"clean", "ucf-released", "vggsound-released", "activitynet-released"}
