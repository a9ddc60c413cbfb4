"""Goldens for clipclap's `hspmoe` head from HSP-MoE-AVGZSL's own code (src/clipclap_model.py
verbatim, the FAR/evaluation excerpt of src/utils.py verbatim as src/utils_far.py; README.md
here). Not run by the tests: copy it beside their `src/` and run
    python make_goldens.py tests/goldens_hspmoe
Only adaptation: modules their repository imports but does not ship or never uses on this path
(einops, opt_einsum, src.optimizer's SAM) are empty stand-ins; the code runs on the CPU."""
import json
import sys
import types
from argparse import Namespace

import numpy as np
import torch

for name in ("einops", "opt_einsum", "src.optimizer"):
    stub = types.ModuleType(name)
    stub.rearrange = stub.repeat = stub.SAM = None
    sys.modules[name] = stub

from src.clipclap_model import ClipClap_model  # noqa: E402
from src.utils_far import _fuse_far_distance, get_best_evaluation  # noqa: E402

OUT = GOLDEN_DIR = sys.argv[1]  # tests/goldens_hspmoe: inputs.py there draws the inputs and initial weights
LR = 1e-3  # the steps' learning rate (their UCF run uses 7e-5; larger so that three steps move the weights)

# Their README's full model (section 6.2), through the keys get_model_params() builds
PARAMS = dict(dim_out=64, cross_entropy_loss=True, lr=LR, optimizer="adam", additional_dropout=0.1, reg_loss=True,
              dropout_encoder=0.1, dropout_decoder=0.1, encoder_hidden_size=512, decoder_hidden_size=512,
              embeddings_batch_norm=True, rec_loss=True, lr_scheduler=False, modality="both", word_embeddings="both",
              av_fusion_module=False, av_fusion_dropout=0.1, semantic_consensus_routing=True,
              semantic_consensus_weight=0.5, semantic_consensus_temperature=1.0, semantic_distill_loss=True,
              semantic_distill_weight=0.0, semantic_distribution_weight=0.001, semantic_relation_weight=0.0002,
              semantic_distill_mode="both", semantic_distill_temperature=2.0, semantic_hyperspherical=True,
              semantic_hyperspherical_temperature=0.1, semantic_radial_mode="none", semantic_radial_alpha=0.0,
              semantic_hup_loss=True, semantic_hup_weight=0.0002, semantic_hup_mode="uniformity",
              semantic_hup_temperature=2.0, semantic_hup_margin=0.0, semantic_hup_cross_class_only=True)
FAR = Namespace(semantic_far_fusion=True, semantic_far_adapted_weight=0.5, semantic_far_scale_raw=True)


sys.path.insert(0, GOLDEN_DIR)
from inputs import SEEN, golden_inputs, golden_state  # noqa: E402

arrays_in = golden_inputs()
t = {k: torch.from_numpy(v) for k, v in arrays_in.items()}
class_text, labels, audio, video = t["class_text"], t["labels"], t["audio"], t["video"]
step_batches = [t[f"step{i}_labels"] for i in (1, 2, 3)]
step_inputs = [(t[f"step{i}_audio"], t[f"step{i}_video"]) for i in (1, 2, 3)]
eval_labels, eval_audio, eval_video = t["eval_labels"], t["eval_audio"], t["eval_video"]
C = len(class_text)

torch.manual_seed(0)
model = ClipClap_model(PARAMS, input_size_audio=1024, input_size_video=512)
model.load_state_dict({k: torch.from_numpy(v) for k, v in
                       golden_state({k: tuple(v.shape) for k, v in model.state_dict().items()}).items()})
model.optimizer_gen = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-5)  # as built, on the loaded weights
state0 = {k: v.clone() for k, v in model.state_dict().items()}
train_text = class_text[:SEEN]

arrays = {}
meta = {"params": PARAMS, "far": vars(FAR), "lr": LR, "weight_decay": 1e-5, "train_classes": SEEN,
        "seen_class_ids": list(range(SEEN)), "unseen_class_ids": list(range(SEEN, C))}

# (1) eval-mode forward and every loss term
model.eval()
with torch.no_grad():
    out = model.forward(audio, video, class_text[labels], None, None)
    total, parts = model.compute_loss(out, train_text, labels, use_auxiliary_losses=True)
    theta_o_sem, _, theta_w_sem = model.get_embeddings(audio, video, train_text, None, None)
    classes_sem = model._semantic_class_embedding(model.W_proj(model.W_enc(train_text)))
    obs = out["model_input"]
    dp = model._compute_semantic_distribution_distill_loss(out["theta_o_semantic"], classes_sem, obs, train_text)
    rp = model._compute_semantic_relation_distill_loss(out["theta_o_semantic"], obs)
    hup = model._compute_semantic_hup_loss(out["theta_o_semantic"], obs, labels)
    model.semantic_hup_mode = "preserve"
    hup_preserve = model._compute_semantic_hup_loss(out["theta_o_semantic"], obs, labels)
    model.semantic_hup_mode = "uniformity"
arrays.update(theta_o=out["theta_o"].numpy(), theta_o_semantic=out["theta_o_semantic"].numpy(),
              moe_direction=out["theta_o_consensus"].numpy(), routing_weights=out["theta_o_consensus_weights"].numpy(),
              theta_w_semantic=theta_w_sem.numpy(), class_semantic=classes_sem.numpy())
meta["losses_eval_mode"] = {k: float(v) for k, v in parts.items()}
meta["terms_eval_mode"] = {"distribution": float(dp), "relation": float(rp), "hup_uniformity": float(hup),
                           "hup_preserve": float(hup_preserve)}

# (2) three optimiser steps as train_step() takes them: optimize_params(optimize=True), then the
# train-mode get_embeddings(); dropout off (p = 0) so that the steps are deterministic
for m in model.modules():
    if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
model.train()
step_losses = []
for b, (a, v) in zip(step_batches, step_inputs, strict=True):
    loss, parts = model.optimize_params(a, v, b.clone(), class_text[b], None, None, train_text, optimize=True)
    model.get_embeddings(a, v, class_text[b], None, None)
    step_losses.append({k: float(x) for k, x in parts.items()})
meta["step_losses"] = step_losses
# the stepped weights: whole where small (biases, norms, statistics), else the first 256 values
# of each, and every tensor's sum and sum of absolute values
for k, v in model.state_dict().items():
    flat = v.detach().reshape(-1).double()
    kept = v.detach() if v.numel() <= 4096 else v.detach().reshape(-1)[:256]
    arrays[f"after.{k}"] = kept.numpy().copy()
    meta.setdefault("after_sums", {})[k] = [float(flat.sum()), float(flat.abs().sum())]

# (3) evaluation from the initial weights (after the steps, the biases in front of batch norm
# carry Adam-amplified rounding noise, see test_hspmoe.py): FAR-fused distances and the
# calibrated-stacking grid, as evaluate_dataset_baseline() calls them (the "video" mode, which
# it reports for all three)
model.load_state_dict(state0)
model.eval()
with torch.no_grad():
    _, v_p, t_p = model.get_embeddings(eval_audio, eval_video, class_text, None, None)
    raw_a, raw_v, raw_t = model.get_foundation_embeddings(eval_audio, eval_video, class_text)
    adapted = torch.cdist(v_p, t_p)
    fused = _fuse_far_distance(adapted, raw_v, raw_t, FAR, "L2Loss")
dataset = Namespace(seen_class_ids=np.arange(SEEN), unseen_class_ids=np.arange(SEEN, C), all_class_ids=np.arange(C))
grid = get_best_evaluation(dataset, eval_labels, raw_a, v_p, t_p, "video", "cpu", "L2Loss", args=FAR,
                           raw_a_p=raw_a, raw_v_p=raw_v, raw_t_p=raw_t)
fixed = get_best_evaluation(dataset, eval_labels, raw_a, v_p, t_p, "video", "cpu", "L2Loss", best_beta=1 / 15, args=FAR,
                            raw_a_p=raw_a, raw_v_p=raw_v, raw_t_p=raw_t)
arrays.update(eval_adapted=adapted.numpy(), eval_fused=fused.numpy())
meta["evaluation"] = {"grid": {k: v for k, v in grid.items() if k != "recall"},
                      "fixed_beta_1_15": {k: v for k, v in fixed.items() if k != "recall"}}
meta["state_dict_keys"] = {k: list(v.shape) for k, v in state0.items()}

np.savez_compressed(f"{OUT}/hspmoe_a.npz", **arrays)
with open(f"{OUT}/hspmoe_a.json", "w") as fh:
    json.dump(meta, fh, indent=1, sort_keys=True)
print(json.dumps({k: meta[k] for k in ("losses_eval_mode", "terms_eval_mode", "step_losses", "evaluation")},
                 indent=1, default=str))
