"""Triplet-loss baselines with separate audio, video and text branches: CJME and AVGZSLNet.

BASELINES.md 4.3-4.4, with every 300 that is the label dimension set to the dataset's label
dimension (1536 for [CLIP | CLAP]); the 300-wide hidden layer of the text branch stays.
Module and state-dict names are the AVCA-GZSL code's (`triplet_net.embedding_net1` = audio,
`embedding_net2` = video, `embedding_net3` = text). Both heads answer three distance modes;
the test β is the mean of the three validation βs (BASELINES.md 3.4). Negatives (a random other
class, a random video of it) come from the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipclap_cli.api import Batch, Dropout, FusionHead, check_ranges

from .heads_compat import BASELINE_TRAINING


def embedding_net(d_in: int, hidden: int, d_out: int, dropout: float, out_relu: bool) -> nn.Module:
    """Linear -> BN -> ReLU -> Dropout -> Linear [-> ReLU] under the name `fc`."""
    net = nn.Module()
    layers = [nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, d_out)]
    net.fc = nn.Sequential(*layers, *([nn.ReLU()] if out_relu else []))
    net.forward = net.fc.forward
    return net


def _branches(dims, hidden: int, dropout: float, out_relu: bool) -> nn.Module:
    triplet_net = nn.Module()
    triplet_net.embedding_net1 = embedding_net(dims.audio, hidden, 64, dropout, out_relu)
    triplet_net.embedding_net2 = embedding_net(dims.video, hidden, 64, dropout, out_relu)
    triplet_net.embedding_net3 = embedding_net(dims.text, 300, 64, dropout, out_relu)
    return triplet_net


def _per_modality(a: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    da, dv = torch.cdist(a, t), torch.cdist(v, t)
    return {"audio": da, "video": dv, "both": da + dv}


class CjmeHead(FusionHead):
    """CJME: audio, video and text embeddings with a hard audio/video gate.

    Loss: gated triplet terms (anchor: text) + MSE(a', v') + MSE(α, entropy targets), where the
    targets compare the softmax entropies of a' and v' against the detached projections of all
    training classes. Quirk 8: the original weights the per-sample triplet terms with a (B, 1)
    gate against (B,) losses, which broadcasts to mean(1-α)·mean(ℓa) + mean(α)·mean(ℓv);
    `fixed=false` (default) reproduces that because it shapes the published numbers,
    `fixed=true` weights per sample. Test: audio, video, and both = (1-τ)·D_a + τ·D_v with the
    thresholded gate τ.
    """

    head_id = "cjme"
    needs_negatives = True
    train_defaults = BASELINE_TRAINING

    @dataclass(frozen=True)
    class Params:
        dropout: float = 0.2
        "dropout_baselines (0.2 for UCF and ActivityNet, 0.0 for VGGSound)"
        hidden: int = 1024
        "Hidden width of the audio and video branches (embeddings_hidden_size)"
        margin: float = 1.0
        "Triplet margin"
        fixed: bool = False
        "Weight the triplet terms per sample instead of the original's product of batch means"

        def __post_init__(self):
            check_ranges(self, sizes=("hidden",), rates=("dropout",))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        self.triplet_net = _branches(dims, params.hidden, params.dropout, out_relu=True)
        joint = dims.audio + dims.video
        self.attention_model = nn.Sequential(nn.BatchNorm1d(joint), nn.Linear(joint, 1))

    def gate(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """α in (0, 1), shape (N, 1): 1 means "trust the video"."""
        return torch.sigmoid(self.attention_model(torch.cat((audio, video), dim=1)))

    def loss(self, batch: Batch, class_text):
        net, m = self.triplet_net, self.params.margin
        a, v, t = net.embedding_net1(batch.audio), net.embedding_net2(batch.video), net.embedding_net3(batch.text)
        a_neg, v_neg = net.embedding_net1(batch.audio_neg), net.embedding_net2(batch.video_neg)
        alpha = self.gate(batch.audio, batch.video)
        l_a = F.triplet_margin_loss(t, a, a_neg, margin=m, reduction="none")
        l_v = F.triplet_margin_loss(t, v, v_neg, margin=m, reduction="none")
        if self.params.fixed:
            l_ct = ((1 - alpha[:, 0]) * l_a + alpha[:, 0] * l_v).mean()
        else:
            l_ct = (1 - alpha).mean() * l_a.mean() + alpha.mean() * l_v.mean()
        l_av = F.mse_loss(a, v)
        with torch.no_grad():
            t_cls = net.embedding_net3(class_text)
            h_a = _entropy(a @ t_cls.T)
            h_v = _entropy(v @ t_cls.T)
            target = torch.full_like(h_a, 0.5)
            target[h_v - h_a > 0.1] = 0.0
            target[h_a - h_v > 0.1] = 1.0
        l_att = F.mse_loss(alpha[:, 0], target)
        total = l_ct + l_av + l_att
        return total, {"triplet": l_ct, "audio_video": l_av, "attention": l_att}

    def distances(self, audio, video, class_text):
        net = self.triplet_net
        d = _per_modality(net.embedding_net1(audio), net.embedding_net2(video), net.embedding_net3(class_text))
        tau = (self.gate(audio, video) >= 0.5).to(d["audio"].dtype)
        d["both"] = (1 - tau) * d["audio"] + tau * d["video"]
        return d


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(dim=1)
    return -(p * torch.log(p)).sum(dim=1)


class AvgzslnetHead(FusionHead):
    """AVGZSLNet: audio, video, text branches and a shared cross-modal decoder to label space.

    Loss: L_cmd (reconstruction distances of the decoded text/audio/video embeddings to the label
    embedding, plus two decoder triplets) + L_ct (four composite triplets between text and each
    modality). Test: audio, video, and both = D_a + D_v.
    """

    head_id = "avgzslnet"
    needs_negatives = True
    train_defaults = BASELINE_TRAINING

    @dataclass(frozen=True)
    class Params:
        hidden: int = 1024
        "Hidden width of the audio and video branches (embeddings_hidden_size)"
        dropout: float = 0.8
        "Dropout of the three branches (embedding_dropout)"
        decoder_hidden: int = 64
        "Hidden width of the decoder (decoder_hidden_size)"
        decoder_dropout: float = 0.5
        "Dropout of the decoder"
        margin: float = 1.0
        "Triplet margin"

        def __post_init__(self):
            check_ranges(self, sizes=("hidden", "decoder_hidden"), rates=("dropout", "decoder_dropout"))

    def __init__(self, dims, params):
        super().__init__(dims, params)
        p = params
        self.triplet_net = _branches(dims, p.hidden, p.dropout, out_relu=False)
        self.decoder_net = nn.Module()
        self.decoder_net.embedding_net = embedding_net(64, p.decoder_hidden, dims.text, p.decoder_dropout, False)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.decoder_net.embedding_net(x))

    def loss_parts(self, batch: Batch) -> dict[str, torch.Tensor]:
        net, m = self.triplet_net, self.params.margin
        a, v, t = net.embedding_net1(batch.audio), net.embedding_net2(batch.video), net.embedding_net3(batch.text)
        a_n, v_n = net.embedding_net1(batch.audio_neg), net.embedding_net2(batch.video_neg)
        t_n = net.embedding_net3(batch.text_neg)
        xt, xa, xv, xa_n, xv_n = (self.decode(x) for x in (t, a, v, a_n, v_n))
        w = batch.text

        def dist(x, y):
            return (x - y).norm(dim=1).mean()

        def trip(x, p, n):
            return F.triplet_margin_loss(x, p, n, margin=m)

        return {"l_rec": dist(xt, w) + dist(xa, w) + dist(xv, w),
                "l_cta": trip(xt, xa, xa_n), "l_ctv": trip(xt, xv, xv_n),
                "l_ta": trip(t, a, a_n), "l_at": trip(a, t, t_n), "l_tv": trip(t, v, v_n), "l_vt": trip(v, t, t_n)}

    def loss(self, batch, class_text):
        parts = self.loss_parts(batch)
        return sum(parts.values()), parts

    def distances(self, audio, video, class_text):
        net = self.triplet_net
        return _per_modality(net.embedding_net1(audio), net.embedding_net2(video), net.embedding_net3(class_text))
