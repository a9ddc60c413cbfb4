"""The reference's goldens through the project's code on a device (a GPU, typically).

    python benchmarks/goldens_on_device.py [--device cuda]

The test suite checks the goldens on the CPU; this runs the same comparisons where the tests
cannot: the `clipclap` head loaded with `model_a`'s state dict (embeddings to rtol 1e-5, losses
to 1e-5 relative) and the `eval_a` grid search on distances computed on the device (1e-6).
Prints each comparison and exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from clipclap_cli.api import FeatureDims
from clipclap_cli.evaluate.metrics import evaluate_distances
from clipclap_cli.plugins.fusion_head import Batch
from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.runs.checkpoints import load_into
from shared_material import GOLDENS


def check_model_a(device: str) -> bool:
    z = np.load(GOLDENS / "model_a.npz")
    arrays = {k: torch.from_numpy(z[k]).to(device) for k in z.files}
    want_losses = json.loads((GOLDENS / "model_a.json").read_text())["losses_eval_mode"]
    dims = FeatureDims(audio=1024, video=512, text_parts=(("clip", 512), ("clap", 1024)))
    head = create_head("clipclap", dims, {}, pm=make_plugin_manager(entrypoints=False))
    load_into(head, {k[len("state."):]: v.cpu() for k, v in arrays.items() if k.startswith("state.")}, "model_a")
    head = head.to(device).eval()
    ok = True
    with torch.no_grad():
        for name, got in (("theta_o", head.embed_samples(arrays["audio"], arrays["video"])),
                          ("theta_w", head.class_embeddings(arrays["class_text"]))):
            close = torch.allclose(got, arrays[name], rtol=1e-5, atol=1e-6)
            ok &= close
            print(f"model_a {name}: max abs diff {(got - arrays[name]).abs().max().item():.1e}, "
                  f"within rtol 1e-5: {close}")
        labels = arrays["labels"].long()
        batch = Batch(arrays["audio"], arrays["video"], arrays["class_text"][labels], labels)
        total, parts = head.loss(batch, arrays["class_text"])
    for name, value in (("total_loss", total), *parts.items()):
        want = want_losses[f"Loss/{name}"]
        rel = abs(float(value) - want) / abs(want)
        ok &= rel <= 1e-5
        print(f"model_a loss {name}: {float(value):.8f} (reference {want:.8f}, relative diff {rel:.1e})")
    return ok


def check_eval_a(device: str) -> bool:
    e = np.load(GOLDENS / "eval_a.npz")
    want = json.loads((GOLDENS / "eval_a.json").read_text())["results"]["grid"]
    emb, cls = (torch.from_numpy(e[k]).to(device) for k in ("embeddings", "class_embeddings"))
    got = evaluate_distances(torch.cdist(emb, cls).cpu(), torch.from_numpy(e["targets"]),
                             torch.from_numpy(e["seen_class_ids"]), torch.from_numpy(e["unseen_class_ids"]),
                             num_classes=int(e["num_classes"])).best.as_dict()
    diff = max(abs(got[k] - want[k]) for k in ("seen", "unseen", "hm", "zsl", "beta"))
    print(f"eval_a grid: HM {got['hm']:.6f} (reference {want['hm']:.6f}), max abs diff {diff:.1e}")
    return diff <= 1e-6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    device = ap.parse_args().device
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(device) if device.startswith('cuda') else device}")
    ok = check_model_a(device) & check_eval_a(device)
    print("goldens:", "reproduced" if ok else "NOT reproduced")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
