"""MTCNN face detector (P-, R-, O-net cascade) in torch, batched, on the CPU or a GPU.

    det = Mtcnn(device="cpu")                       # weights from facenet-pytorch's wheel
    for faces in det.detect([image_a, image_b]):    # uint8 (H, W, 3) RGB each
        faces.boxes, faces.scores, faces.points     # (n, 4) x1 y1 x2 y2, (n,), (n, 5, 2)

Weights: facenet-pytorch 2.6.0 ships the three nets as plain state dicts
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``). The package pins an old torch, so it is
installed without its dependencies (``pip install --no-deps facenet-pytorch==2.6.0``;
``make install`` does this) and only those files are read, with
``torch.load(..., weights_only=True)``, into the modules below; nothing of the package
is imported. ``weights_dir`` points at another copy of the three files.

Algorithm (Zhang et al. 2016): an image pyramid (scale 12 / min_face, then x0.709 down
to 12 px) through the fully convolutional P-net (12x12 windows, stride 2); candidate
boxes above threshold 0.6, NMS 0.5 per scale and 0.7 over scales, box regression,
squared; R-net on 24x24 crops (threshold 0.7, NMS 0.7, regression, squared); O-net on
48x48 crops (threshold 0.7) gives the final box, score and five landmarks (left eye,
right eye, nose, left and right mouth corner), then NMS 0.7 by intersection over the
smaller box. Crops outside the image are zero-padded. R- and O-net crops of every image
in a call run as one batch.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceidx.errors import DataError

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"
MAX_CANDIDATES = 4096     # P-net boxes per scale kept for NMS (highest scores first)


class PNet(nn.Module):
    """12x12 proposal net, fully convolutional: (N,3,H,W) -> (probs (N,2,h,w), reg (N,4,h,w))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """24x24 refine net: (N,3,24,24) -> (probs (N,2), reg (N,4))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        # the weights come from a net trained on transposed images: flatten as (w, h, c)
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return F.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """48x48 output net: (N,3,48,48) -> (probs (N,2), reg (N,4), landmarks (N,10))."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return F.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


@dataclass
class MtcnnFaces:
    """Faces of one image: boxes (n, 4) x1, y1, x2, y2 (inclusive, float), scores (n,),
    points (n, 5, 2) x, y of left eye, right eye, nose, left and right mouth corner."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray


def mtcnn_weights_dir() -> Path:
    """The folder of pnet.pt / rnet.pt / onet.pt inside the installed facenet-pytorch."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the mtcnn detector needs MTCNN's weights from facenet-pytorch: "
                        f"{INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_nets(weights_dir: str | os.PathLike | None = None) -> tuple[PNet, RNet, ONet]:
    """P-, R- and O-net with the weights of `weights_dir` (default: facenet-pytorch's)."""
    folder = mtcnn_weights_dir() if weights_dir is None else Path(weights_dir)
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, WEIGHT_FILES, strict=True):
        path = folder / name
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except FileNotFoundError as err:
            raise DataError(f"MTCNN weight file missing ({INSTALL_HINT})", path) from err
        except (RuntimeError, ValueError, OSError) as err:
            raise DataError(f"cannot load MTCNN weights: {err}", path) from err
        net.eval()
    return nets


class Mtcnn:
    """The cascade on `device`; `detect` takes a list of images and batches R/O-net crops."""

    def __init__(self, device: str | torch.device = "cpu", min_face: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, weights_dir: str | os.PathLike | None = None):
        if min_face < 12:
            raise ValueError(f"min_face must be at least 12 pixels, got {min_face}")
        self.device = torch.device(device)
        self.min_face, self.thresholds, self.factor = min_face, thresholds, factor
        self.pnet, self.rnet, self.onet = (n.to(self.device) for n in load_nets(weights_dir))

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[MtcnnFaces]:
        """Faces of each uint8 (H, W, 3) RGB image, highest score first."""
        tensors = [torch.as_tensor(np.array(im, np.uint8), device=self.device)
                   .permute(2, 0, 1).float() for im in images]
        boxes, owner = [], []
        for i, t in enumerate(tensors):
            b = self._propose(t)
            boxes.append(b)
            owner.append(torch.full((len(b),), i, dtype=torch.long, device=self.device))
        b, o = torch.cat(boxes), torch.cat(owner)
        b, o, _ = self._refine(tensors, b, o, self.rnet, 24, self.thresholds[1])
        b, o, pts = self._refine(tensors, b, o, self.onet, 48, self.thresholds[2])
        out = []
        for i in range(len(images)):
            sel = (o == i).nonzero().flatten()
            keep = sel[nms(b[sel, :4], b[sel, 4], 0.7, "min")] if len(sel) else sel
            out.append(MtcnnFaces(b[keep, :4].cpu().numpy() - 1.0,   # 1-based -> 0-based
                                  b[keep, 4].cpu().numpy(), pts[keep].cpu().numpy()))
        return out

    def _propose(self, img: torch.Tensor) -> torch.Tensor:
        """P-net candidates of one (3, H, W) image: (n, 5) x1 y1 x2 y2 score, squared."""
        h, w = img.shape[1:]
        scale = 12.0 / self.min_face
        side = min(h, w) * scale
        found = []
        while side >= 12:
            size = (int(h * scale + 1), int(w * scale + 1))
            x = (F.interpolate(img[None], size=size, mode="area") - 127.5) * 0.0078125
            probs, reg = self.pnet(x)
            p = probs[0, 1]
            ys, xs = (p >= self.thresholds[0]).nonzero(as_tuple=True)
            if len(ys):
                score = p[ys, xs]
                if len(score) > MAX_CANDIDATES:
                    top = score.topk(MAX_CANDIDATES).indices
                    ys, xs, score = ys[top], xs[top], score[top]
                q1x, q1y = ((2 * xs + 1) / scale).floor(), ((2 * ys + 1) / scale).floor()
                q2x, q2y = ((2 * xs + 12) / scale).floor(), ((2 * ys + 12) / scale).floor()
                cand = torch.stack([q1x, q1y, q2x, q2y, score], 1)
                r = reg[0][:, ys, xs].T
                keep = nms(cand[:, :4], cand[:, 4], 0.5)
                found.append(torch.cat([cand[keep], r[keep]], 1))
            scale *= self.factor
            side *= self.factor
        if not found:
            return torch.zeros((0, 5), device=self.device)
        c = torch.cat(found)
        c = c[nms(c[:, :4], c[:, 4], 0.7)]
        wh = (c[:, 2:4] - c[:, 0:2]).repeat(1, 2)     # P-net regression: no +1
        return _square(torch.cat([c[:, :4] + c[:, 5:9] * wh, c[:, 4:5]], 1))

    def _refine(self, tensors, boxes, owner, net, size: int, threshold: float):
        """Run R- or O-net on every box's crop; keep those above threshold, regressed."""
        if not len(boxes):
            return boxes, owner, torch.zeros((0, 5, 2), device=self.device)
        crops = torch.cat([_crop(tensors[int(i)], b, size) for b, i in zip(boxes, owner, strict=True)])
        outs = [net((crops[k:k + 512] - 127.5) * 0.0078125) for k in range(0, len(crops), 512)]
        probs, reg = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        score = probs[:, 1]
        ok = score > threshold
        b = torch.cat([boxes[ok, :4], score[ok, None]], 1)
        owner, reg = owner[ok], reg[ok]
        wh = (b[:, 2:4] - b[:, 0:2] + 1).repeat(1, 2)
        if size == 24:
            keep = _nms_per_owner(b, owner, 0.7)
            b, owner, reg, wh = b[keep], owner[keep], reg[keep], wh[keep]
            b = _square(torch.cat([b[:, :4] + reg * wh, b[:, 4:5]], 1))
            return b, owner, None
        lm = torch.cat([o[2] for o in outs])[ok]
        pts = torch.stack([b[:, 0:1] + wh[:, 0:1] * lm[:, :5] - 1,
                           b[:, 1:2] + wh[:, 1:2] * lm[:, 5:] - 1], 2)
        b = torch.cat([b[:, :4] + reg * wh, b[:, 4:5]], 1)
        return b, owner, pts


def _square(b: torch.Tensor) -> torch.Tensor:
    """Boxes grown to squares about their centres (side = the longer side)."""
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = torch.maximum(w, h)
    x1, y1 = b[:, 0] + 0.5 * (w - side), b[:, 1] + 0.5 * (h - side)
    return torch.stack([x1, y1, x1 + side, y1 + side, b[:, 4]], 1)


def _crop(img: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """The (1, 3, size, size) area-resampled crop of an inclusive box; zeros outside.

    Boxes inside the cascade are 1-based, as in the reference implementation the
    weights were trained with (P-net's grid maps cell 0 to pixel 1).
    """
    h, w = img.shape[1:]
    x1, y1, x2, y2 = (int(v) - 1 for v in box[:4].trunc().tolist())
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    out = torch.zeros((1, 3, max(bh, 1), max(bw, 1)), device=img.device)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w - 1), min(y2, h - 1)
    if sx2 >= sx1 and sy2 >= sy1:
        out[0, :, sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = img[:, sy1:sy2 + 1, sx1:sx2 + 1]
    return F.interpolate(out, size=(size, size), mode="area")


def _nms_per_owner(b: torch.Tensor, owner: torch.Tensor, thr: float) -> torch.Tensor:
    """NMS separately for each image: boxes shifted apart by image index never overlap."""
    if not len(b):
        return torch.zeros(0, dtype=torch.long, device=b.device)
    shift = (owner.to(b.dtype) * (b[:, :4].max() + 2))[:, None]
    return nms(b[:, :4] + shift, b[:, 4], thr)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float, mode: str = "union") -> torch.Tensor:
    """Greedy non-maximum suppression: indices kept, highest score first.

    Overlap = intersection / union (``union``) or / the smaller area (``min``), with
    inclusive pixel boxes (+1 on widths); a box goes when its overlap with a kept,
    higher-scoring box exceeds `thr`.
    """
    if not len(boxes):
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    inter = iw * ih
    denom = torch.minimum(area[:, None], area[None, :]) if mode == "min" else area[:, None] + area[None, :] - inter
    over = (inter / denom > thr).cpu().numpy()
    removed = np.zeros(len(b), bool)
    keep = []
    for i in range(len(b)):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]
