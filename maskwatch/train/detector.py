"""Fine-tune the YuNet face detector on annotated scene photos (VOC or YOLO sets), on a CPU.

The starting point is the YuNet ONNX file itself (``onnx_net.OnnxNet``: its graph run in PyTorch with its
weights as parameters); the result is the same graph with tuned weights, so the run-time ``yunet`` detector
loads it unchanged. Training follows face-detector practice, kept small enough for two CPU cores:

- **Views**: each photo is rescaled at random (longer side ``min_side..max_side`` pixels) and a ``crop`` x ``crop``
  window is cut from it (zero padding where the photo is smaller, as at run time), flipped half the time, with
  mild brightness/contrast jitter. Small faces thus appear at the sizes the photo passes enlarge them to.
- **Assignment** (SimOTA, as YOLOX and YuNet's own training): for each annotated face, the grid points near its
  centre are candidates; the ``k`` cheapest by classification cost + 3 x IoU cost become its positives (``k`` from
  the IoUs the model already reaches). **Losses**: objectness BCE on every point, class BCE on positives (target 1, which keeps the face scores on the original's scale), 1 - GIoU on positive boxes, and the landmarks distilled from the original model (the sets have no
  landmarks; this keeps the five points the crops and the JSON carry where they were).
- **Unannotated faces**: the original model's confident boxes (score >= ``ignore_score``) that overlap no
  annotated face, and annotated faces cut by the crop, are ignored (no loss), not taught as background: the
  sets leave many real faces unboxed.

Every epoch writes ``last.pt`` (for ``resume``) and measures face AP@0.5 on the validation sets with the real
run-time detector; the best epoch is exported as ``face_detector.onnx`` with ``history.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import Dataset, LabelledImage, iter_images, load_sources
from ..errors import InputError
from ..models import resolve
from .config import DetectorTrainConfig
from .onnx_net import OnnxNet, write_weights

STRIDES = (8, 16, 32)
VAL_SCORE = 0.1  # face-score floor of the validation pass (AP counts every box above it)
RESUME_MAY_CHANGE = ("out", "threads")
"""Settings a resumed run may give differently: where the run is (spelt another way) and how many threads train it."""


# ----------------------------------------------------------------------------------------------- data

def _faces(im: LabelledImage) -> np.ndarray:
    return np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)


def _face_weights(im: LabelledImage, bare_weight: float) -> np.ndarray:
    """A loss weight per annotated face of ``im`` (in :func:`_faces` order): ``bare_weight`` for without_mask, else 1."""
    labels = [lab for lab, b in zip(im.labels, im.boxes) if b is not None]
    return np.array([bare_weight if lab == "without_mask" else 1.0 for lab in labels], np.float32)


def random_view(img: np.ndarray, boxes: np.ndarray, cfg: DetectorTrainConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A training view: (crop x crop x 3 BGR uint8, kept xyxy boxes, ignored xyxy boxes, the kept boxes' indices in
    ``boxes``), in the view's pixels."""
    h, w = img.shape[:2]
    side = math.exp(rng.uniform(math.log(cfg.min_side), math.log(cfg.max_side)))
    s = side / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    scaled = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    c = cfg.crop
    x0 = int(rng.integers(0, nw - c + 1)) if nw > c else 0
    y0 = int(rng.integers(0, nh - c + 1)) if nh > c else 0
    view: np.ndarray = np.zeros((c, c, 3), np.uint8)
    part = scaled[y0 : y0 + c, x0 : x0 + c]
    view[: part.shape[0], : part.shape[1]] = part
    b = boxes * s - np.array([x0, y0, x0, y0], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis_w, vis_h = part.shape[1], part.shape[0]
    clipped = b.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, vis_w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, vis_h)
    vis = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    frac = vis / np.maximum(area, 1e-6)
    small = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]) < cfg.min_face
    keep = (frac >= 0.6) & ~small
    ignore = (frac > 0) & ~keep
    if rng.random() < 0.5:
        view = view[:, ::-1].copy()
        clipped[:, [0, 2]] = c - clipped[:, [2, 0]]  # kept and ignored boxes both come from it
    if rng.random() < 0.8:
        alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        view = cv2.convertScaleAbs(view, alpha=alpha, beta=beta)
    if rng.random() < 0.1:
        view = cv2.cvtColor(cv2.cvtColor(view, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return view, clipped[keep], clipped[ignore], np.nonzero(keep)[0]


# ----------------------------------------------------------------------------------------------- loss
def _points(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points (P, 2) in pixels (YuNet decodes around the cell's top-left corner) and their strides (P,)."""
    pts, strides = [], []
    for s in STRIDES:
        gy, gx = torch.meshgrid(torch.arange(size // s), torch.arange(size // s), indexing="ij")
        pts.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).float() * s)
        strides.append(torch.full((pts[-1].shape[0],), float(s)))
    return torch.cat(pts), torch.cat(strides)


def _cat(out: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    return torch.cat([out[f"{key}_{s}"] for s in STRIDES], 1)


def decode(bbox: torch.Tensor, pts: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Raw YuNet box outputs (N, P, 4) -> xyxy pixels (N, P, 4)."""
    st = strides[None, :, None]
    c = pts[None] + bbox[..., :2] * st
    wh = torch.exp(bbox[..., 2:].clamp(max=8.0)) * st
    return torch.cat([c - wh / 2, c + wh / 2], -1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def _giou_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1) - inter
    iou = inter / (union + 1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return 1 - iou + (hull - union) / (hull + 1e-9)


@torch.no_grad()
def simota(score: torch.Tensor, boxes: torch.Tensor, gt: torch.Tensor, pts: torch.Tensor, strides: torch.Tensor,
           radius: float = 2.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positives for one image: (point indices, their ground-truth index, their IoU). score (P,) 0..1, boxes (P, 4)
    decoded, gt (G, 4) xyxy."""
    inside = ((pts[:, None, 0] > gt[None, :, 0]) & (pts[:, None, 0] < gt[None, :, 2])
              & (pts[:, None, 1] > gt[None, :, 1]) & (pts[:, None, 1] < gt[None, :, 3]))
    ctr = (gt[:, :2] + gt[:, 2:]) / 2
    near = ((pts[:, None, :] - ctr[None]).abs() < radius * strides[:, None, None]).all(-1)
    cand = (inside | near).any(1)
    idx = torch.nonzero(cand).squeeze(1)
    empty = torch.zeros(0, dtype=torch.long)
    if len(idx) == 0:
        return empty, empty, torch.zeros(0)
    ious = _iou(gt, boxes[idx])  # (G, C)
    cls_cost = -torch.log(score[idx].clamp(1e-6, 1.0))[None]
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~(inside[idx] & near[idx])).T.float()
    k = ious.topk(min(10, ious.shape[1]), 1).values.sum(1).int().clamp(min=1)
    match = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(len(gt)):
        kk = min(int(k[g]), cost.shape[1])
        match[g, cost[g].topk(kk, largest=False).indices] = True
    multi = match.sum(0) > 1
    if multi.any():
        best = cost[:, multi].argmin(0)
        match[:, multi] = False
        match[best, torch.nonzero(multi).squeeze(1)] = True
    pos = match.any(0)
    gi = match[:, pos].float().argmax(0)
    return idx[pos], gi, ious[gi, torch.nonzero(pos).squeeze(1)]


def detector_loss(out: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], gts: list[torch.Tensor],
                  ignores: list[torch.Tensor], pts: torch.Tensor, strides: torch.Tensor, ignore_score: float,
                  gt_weights: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch; ``gt_weights``: a loss weight per annotated face (default 1), e.g. more for
    bare faces, whose misses cost an alert."""
    cls, obj = _cat(out, "cls")[..., 0], _cat(out, "obj")[..., 0]
    boxes = decode(_cat(out, "bbox"), pts, strides)
    kps, t_kps = _cat(out, "kps"), _cat(teacher, "kps")
    t_score = torch.sqrt(_cat(teacher, "cls")[..., 0] * _cat(teacher, "obj")[..., 0])
    t_boxes = decode(_cat(teacher, "bbox"), pts, strides)
    score = torch.sqrt(cls.clamp(0, 1) * obj.clamp(0, 1))
    n_pos = 0
    l_obj = l_cls = l_box = l_kps = torch.zeros(())
    for i, gt in enumerate(gts):
        obj_t = torch.zeros_like(obj[i])
        weight = torch.ones_like(obj[i])
        # Ignored: points inside faces the crop cut or that are too small, and inside the original model's
        # confident boxes that overlap no annotated face (mostly faces the annotators did not box).
        regions = [ignores[i]]
        conf = t_score[i] >= ignore_score
        if conf.any():
            tb = t_boxes[i][conf]
            if len(gt):
                tb = tb[_iou(tb, gt).max(1).values < 0.3]
            regions.append(tb)
        reg = torch.cat(regions) if regions else torch.zeros(0, 4)
        if len(reg):
            inside = ((pts[:, None, 0] >= reg[None, :, 0]) & (pts[:, None, 0] <= reg[None, :, 2])
                      & (pts[:, None, 1] >= reg[None, :, 1]) & (pts[:, None, 1] <= reg[None, :, 3])).any(1)
            weight[inside] = 0.0
        if len(gt):
            p, g, iou = simota(score[i].detach(), boxes[i].detach(), gt, pts, strides)
            if len(p):
                w = gt_weights[i][g] if gt_weights is not None else torch.ones(len(p))
                obj_t[p] = 1.0
                weight[p] = w
                n_pos += len(p)
                # Target 1, not the IoU (YOLOX): the face scores keep the original's scale, so the score
                # thresholds chosen for it (settings.PHOTO, LIVE) keep their meaning.
                bce = F.binary_cross_entropy(cls[i, p].clamp(1e-6, 1 - 1e-6), torch.ones_like(iou), reduction="none")
                l_cls = l_cls + (bce * w).sum()
                l_box = l_box + (_giou_loss(boxes[i, p], gt[g]) * w).sum()
                l_kps = l_kps + F.smooth_l1_loss(kps[i, p], t_kps[i, p], reduction="sum")
        l_obj = l_obj + (F.binary_cross_entropy(obj[i].clamp(1e-6, 1 - 1e-6), obj_t, reduction="none") * weight).sum()
    norm = max(n_pos, 1)
    total = (l_obj + l_cls + 5.0 * l_box + 0.1 * l_kps) / norm
    return total, {"obj": float(l_obj.detach()) / norm, "cls": float(l_cls.detach()) / norm, "box": float(l_box.detach()) / norm,
                   "kps": float(l_kps.detach()) / norm, "pos": n_pos}


# ----------------------------------------------------------------------------------------------- evaluation
def val_face_ap(detector: Any, ds: Dataset) -> dict[str, float]:
    """Face AP@0.5 (any class), recall and boxes per photo of ``detector`` on the scene photos of ``ds``."""
    from ..eval.detection import face_ap, match_faces

    scored: list[tuple[float, bool]] = []
    n_gt = found = n_img = 0
    skipped: list[str] = []
    for im, img in iter_images(ds.images, skipped):
        gt = _faces(im)
        det = detector.detect(img)
        match = match_faces(gt, det.xyxy, np.argsort(-det.face_score, kind="stable"))
        scored += [(float(s), bool(m >= 0)) for s, m in zip(det.face_score, match)]
        n_gt += len(gt)
        found += int((match >= 0).sum())
        n_img += 1
    return {"face_ap": face_ap(scored, n_gt), "recall": found / max(n_gt, 1), "boxes_per_photo": len(scored) / max(n_img, 1)}


# ----------------------------------------------------------------------------------------------- training
def train_detector(cfg: DetectorTrainConfig, resume: bool = False, progress: bool = False,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune YuNet as ``cfg`` says; returns the summary written to ``OUT/history.json``."""
    import onnx

    from ..detectors.yunet import YuNetDetector

    if not cfg.data:
        raise InputError("no training data; give scene sets, e.g. ../shared/data/detect/ilc-2021@train")
    if cfg.crop % 32 or not 128 <= cfg.crop <= 2048:
        raise InputError(f"crop={cfg.crop} is invalid; use a multiple of 32 between 128 and 2048")
    if not 0 < cfg.bare_weight <= 100:
        raise InputError(f"bare_weight={cfg.bare_weight} is invalid; give a loss weight above 0 and at most 100")
    if not 0 < cfg.min_side <= cfg.max_side:
        raise InputError(f"min_side={cfg.min_side}, max_side={cfg.max_side}: need 0 < min_side <= max_side")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base_path = resolve(cfg.base)
    base = onnx.load(str(base_path))
    student, teacher = OnnxNet(base), OnnxNet(base)
    for p in teacher.parameters():
        p.requires_grad_(False)
    train_ds = load_sources(cfg.data)
    images = [im for im in train_ds.images if any(b is not None for b in im.boxes)]
    if not images:
        raise InputError(f"{', '.join(cfg.data)}: no photo with face boxes; the detector trains on VOC or YOLO scene sets "
                         "(class folders of face crops have no boxes)")
    if cfg.limit:
        images = images[: cfg.limit]
    val_ds = load_sources(cfg.val) if cfg.val else None
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(images) / cfg.batch))
    total = steps_per_epoch * cfg.epochs
    warm = min(steps_per_epoch, 100)

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    history: list[dict[str, Any]] = []
    start, best = 0, -1.0
    ckpt = out / "last.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        then, now = state["config"], asdict(cfg)
        changed = sorted(k for k in set(then) | set(now) if k not in RESUME_MAY_CHANGE and then.get(k) != now.get(k))
        if changed:
            raise InputError(f"{ckpt}: written with other settings ("
                             + ", ".join(f"{k} {then.get(k)!r} then, {now.get(k)!r} now" for k in changed)
                             + "); give the same settings, start in a new --out folder, or --force to start over")
        student.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        start, best, history = state["epoch"], state["best"], state["history"]
    pts, strides = _points(cfg.crop)
    rng = np.random.default_rng(cfg.seed + 1000 * start)
    if val_ds is not None and start == 0:
        before = val_face_ap(YuNetDetector(base_path, det_size=cfg.val_det_size, score_threshold=VAL_SCORE), val_ds)
        history.append({"epoch": 0, **{f"val_{k}": v for k, v in before.items()}})
        if on_epoch:
            on_epoch(history[-1])
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        student.train()
        order = rng.permutation(len(images))
        sums: dict[str, float] = {}  # loss parts summed over the epoch
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for step in range(steps_per_epoch):
            batch = order[step * cfg.batch : (step + 1) * cfg.batch]
            views, gts, igs, wts = [], [], [], []
            for j in batch:
                im = images[int(j)]
                img = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
                if img is None:
                    continue
                view, g, ig, kept = random_view(img, _faces(im), cfg, rng)
                views.append(view)
                gts.append(torch.from_numpy(g))
                igs.append(torch.from_numpy(ig))
                wts.append(torch.from_numpy(_face_weights(im, cfg.bare_weight)[kept]))
            if not views:
                continue
            x = torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).astype(np.float32))
            with torch.no_grad():
                t_out = teacher(x)
            loss, parts = detector_loss(student(x), t_out, gts, igs, pts, strides, cfg.ignore_score, wts)
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 10.0)
            opt.step()
            for name, value in {"loss": float(loss.detach()), **parts}.items():
                sums[name] = sums.get(name, 0.0) + value
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        if bar:
            bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 1),
                               **{f"train_{k}": round(v / steps_per_epoch, 4) for k, v in sums.items()}}
        model = write_weights(student, base)
        onnx.save(model, str(out / "last.onnx"))
        if val_ds is not None:
            m = val_face_ap(YuNetDetector(out / "last.onnx", det_size=cfg.val_det_size, score_threshold=VAL_SCORE), val_ds)
            row.update({f"val_{k}": v for k, v in m.items()})
            if m["face_ap"] > best:
                best = m["face_ap"]
                onnx.save(model, str(out / "face_detector.onnx"))
                row["best"] = True
        else:
            onnx.save(model, str(out / "face_detector.onnx"))
        history.append(row)
        torch.save({"net": student.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1, "best": best,
                    "history": history, "config": asdict(cfg)}, ckpt)
        if on_epoch:
            on_epoch(row)
    summary = {"config": asdict(cfg), "base": str(base_path), "train_photos": len(images),
               "val_photos": len(val_ds.images) if val_ds else 0, "history": history, "best_val_face_ap": best}
    (out / "history.json").write_text(json.dumps(summary, indent=1))
    return summary
