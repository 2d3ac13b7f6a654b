"""Training loop: context crops -> augmentation -> MobileNetV2 + head -> best checkpoint -> ONNX + reports.

Phase 1 trains the head on the frozen ImageNet backbone; phase 2 fine-tunes the last blocks with Adam at
``lr`` (1e-4 by default), early stopping on validation loss, keeping the best epoch. ``resume=True`` picks up
from ``OUT/last.pt``. Needs the ``train`` extra (PyTorch; matplotlib for the curves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torch.utils.data import Dataset as TorchDataset

from ..crops import IMAGENET_MEAN, IMAGENET_STD
from ..datasets import Dataset, load_sources
from ..detections import MODEL_CLASSES, NOT_FACE
from ..errors import InputError, ModelError
from ..eval import metrics
from ..models import resolve
from .augment import augment, center_view
from .calibration import fit_temperature
from .config import TrainConfig
from .cropset import CropSet, build_cropset, context_size, scene_face_detector
from .model import MaskNet, load_imagenet_trunk, load_maskwatch_onnx

log = logging.getLogger("maskwatch.train")
MIN_CALIBRATION_CROPS = 100
"""Fewer validation crops than this (or a temperature at its limits) and train warns that calibration is weak."""
MODEL_FILE = "mask_classifier.onnx"




class _Views(TorchDataset):
    def __init__(self, cs: CropSet, train: bool, seed: int, erase: float = 0.0, recolour: float = 0.0,
                 class_names: tuple[str, ...] = MODEL_CLASSES) -> None:
        """``class_names``: what ``cs.labels`` index (the classes present); ``recolour`` applies to with_mask only."""
        self.cs, self.train, self.seed, self.epoch, self.erase, self.recolour = cs, train, seed, 0, erase, recolour
        self.masked = class_names.index("with_mask") if "with_mask" in class_names else -1
        self.mean, self.std = IMAGENET_MEAN * 255, IMAGENET_STD * 255

    def __len__(self) -> int:
        return len(self.cs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        ctx = self.cs.image(i)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            masked = int(self.cs.labels[i]) == self.masked
            img = augment(ctx, self.cs.input_size, rng, self.erase, self.recolour if masked else 0.0)
        else:
            img = center_view(ctx, self.cs.input_size)
        x = (img.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), int(self.cs.labels[i])


def stratified_group_split(labels: np.ndarray, groups: list[str], frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): about ``frac`` of each class's groups go to val; a group never straddles both."""
    rng = np.random.default_rng(seed)
    g_arr = np.array(groups)
    uniq, inv = np.unique(g_arr, return_inverse=True)
    g_label = np.array([np.bincount(labels[inv == k]).argmax() for k in range(len(uniq))])
    val_groups = np.zeros(len(uniq), bool)
    for c in np.unique(g_label):
        ids = np.nonzero(g_label == c)[0]
        rng.shuffle(ids)
        if len(ids) < 2:
            continue  # a class with one group stays in training: a model must see every class it is to output
        val_groups[ids[: min(len(ids) - 1, max(1, int(round(len(ids) * frac))))]] = True
    is_val = val_groups[inv]
    return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]


def _cache_key(cfg: TrainConfig, ds: Dataset) -> str:
    """Changes whenever the images, their labels or boxes, the crop size or the margin change."""
    key: list[Any] = [context_size(cfg.input_size), cfg.margin, cfg.max_images, cfg.seed]
    if cfg.scene_boxes != "truth":  # (truth framing keeps the keys of caches made before this setting existed)
        key += [cfg.scene_boxes, "not_face-1"]  # detector caches hold the not_face crops too
        if cfg.scene_detector != "yunet:800,1600":  # (the first detector keeps the keys of earlier caches)
            key.append(cfg.scene_detector)
    h = hashlib.sha1(json.dumps(key).encode())
    for im in ds.images:
        st = im.path.stat()
        h.update(f"{im.path}|{st.st_size}|{st.st_mtime_ns}|{im.labels}|{im.boxes}|{im.source}".encode())
    return h.hexdigest()[:12]


def prepare_crops(cfg: TrainConfig, specs: list[str], cache_dir: Path, progress: bool = False) -> tuple[CropSet, list[str]]:
    """Load sources and cut crops, cached in ``cache_dir`` (keyed by the data's files, labels and boxes)."""
    ds = load_sources(specs)
    cache = cache_dir / f"crops-{_cache_key(cfg, ds)}.npz"
    if cache.exists():
        cs = CropSet.load(cache)
        cs.input_size = cfg.input_size  # one context-crop cache serves every input size up to its own
        return cs, ds.warnings + cs.warnings
    if cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        by_src: dict[str, list] = {}
        for im in ds.images:
            by_src.setdefault(im.source, []).append(im)
        ds.images = [im for ims in by_src.values() for im in (rng.permutation(np.array(ims, object))[: cfg.max_images]).tolist()]
    from tqdm import tqdm

    with tqdm(total=len(ds.images), desc="cropping faces", unit="img", disable=not progress) as bar:
        fd = None
        if cfg.scene_boxes == "detector":  # the run-time framing: the face detector's own boxes
            fd = scene_face_detector(cfg.scene_detector)
        cs, skipped = build_cropset(ds, cfg.input_size, cfg.margin, progress=bar.update, face_detector=fd)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cs.warnings = [f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}"] if skipped else []
    cs.save(cache)
    return cs, ds.warnings + cs.warnings


def _not_face_rule(cs: CropSet, cfg: TrainConfig) -> CropSet:
    """The not_face crops training uses: none with ``not_face`` off, else those scored at most ``not_face_max_score``."""
    nf = cs.labels == MODEL_CLASSES.index(NOT_FACE)
    drop = nf & ((cs.score > cfg.not_face_max_score) | (not cfg.not_face))
    return cs.subset(np.nonzero(~drop)[0]) if drop.any() else cs


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _imagenet_state(spec: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict named by --pretrained ('imagenet' = the registry's torchvision file, or a path)."""
    path = Path(spec) if spec != "imagenet" else resolve("mobilenet_v2_imagenet")
    if not path.is_file():
        raise InputError(f"--pretrained {spec}: no such file; give 'imagenet', a torchvision mobilenet_v2 .pth, or 'none'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: the file is not a state dict
        raise InputError(f"--pretrained {path}: not a PyTorch state dict ({type(e).__name__}); give torchvision's "
                         "mobilenet_v2-b0353104.pth, 'imagenet' or 'none'") from None
    if not isinstance(state, dict):
        raise InputError(f"--pretrained {path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def train(cfg: TrainConfig, progress: bool = False, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, evaluate and export. Writes into ``cfg.out``: mask_classifier.onnx, metrics.json, report.txt,
    confusion.png, curves.png, train.log, best.pt, last.pt. Returns the metrics dict."""
    cfg.validate()
    if cfg.init and not Path(cfg.init).is_file():
        raise InputError(f"--init {cfg.init}: no such file; give a classifier .onnx made by maskwatch train")
    if cfg.pretrained and cfg.pretrained.lower() not in ("none", "imagenet") and not Path(cfg.pretrained).is_file():
        raise InputError(f"--pretrained {cfg.pretrained}: no such file; give 'imagenet', a torchvision mobilenet_v2 .pth, or 'none'")
    if not cfg.init and cfg.pretrained and cfg.pretrained.lower() == "imagenet":
        try:  # found (or downloaded) now, not after minutes of cropping faces
            resolve("mobilenet_v2_imagenet")
        except ModelError as e:
            raise ModelError(f"{e}\nOr train without ImageNet weights: --pretrained none (much weaker on small data).") from None
    out = Path(cfg.out)
    if (out / MODEL_FILE).exists() and not (cfg.force or cfg.resume):
        raise InputError(f"{out}: already holds a model ({MODEL_FILE}); pass --force to overwrite or --resume to continue")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        return _train(cfg, out, progress, on_epoch)
    finally:
        log.removeHandler(handler)
        handler.close()


def _val_overlap(data: list[str], val: list[str]) -> list[str]:
    """Warnings for validation sets that are (part of) the training data: the same folder with no split on one side,
    or the same split on both (``ds --val ds``, ``ds@test --val ds@test``)."""
    def parts(spec: str) -> tuple[Path, str]:
        path, _, fold = spec.partition("@") if "@" in Path(spec).name else (spec, "", "")
        return Path(path).resolve(), fold

    out = []
    for v in val:
        vp, vf = parts(v)
        for d in data:
            dp, df = parts(d)
            if vp == dp and (not vf or not df or vf == df):
                out.append(f"--val {v} holds training images ({d}): the report, the epoch choice and the calibration "
                           "then measure faces the model learnt, not new ones; give another split (PATH@val) or set")
    return out


def _train(cfg: TrainConfig, out: Path, progress: bool, on_epoch: Callable | None) -> dict[str, Any]:
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    cache_dir = out / "cache"
    cs, warnings = prepare_crops(cfg, cfg.data, cache_dir, progress)
    for w in warnings:
        log.warning(w)
    cs = _not_face_rule(cs, cfg)
    present = sorted(set(cs.labels.tolist()))
    if len([p for p in present if MODEL_CLASSES[p] != NOT_FACE]) < 2:
        only = MODEL_CLASSES[present[0]] if present else "none"
        raise InputError(f"the training data holds one class only ({only}); a classifier needs with_mask and without_mask faces")
    class_names = tuple(MODEL_CLASSES[i] for i in present)
    remap = {old: new for new, old in enumerate(present)}
    cs.labels = np.array([remap[v] for v in cs.labels], np.int64)
    if cfg.val:
        for w in _val_overlap(cfg.data, cfg.val):
            log.warning(w)
        vs, _ = prepare_crops(cfg, cfg.val, cache_dir, progress)
        vs = _not_face_rule(vs, cfg)
        keep = np.isin(vs.labels, present)
        vs = vs.subset(np.nonzero(keep)[0])
        vs.labels = np.array([remap[v] for v in vs.labels], np.int64)
        tr = cs
    else:
        tr_idx, va_idx = stratified_group_split(cs.labels, cs.group, cfg.val_frac, cfg.seed)
        tr, vs = cs.subset(tr_idx), cs.subset(va_idx)
    if len(vs) == 0 or len(tr) == 0:
        raise InputError(f"too few faces ({len(cs)}) to split into training and validation; "
                         "give at least two images per class, or a validation set with --val")
    counts = {n: int((tr.labels == i).sum()) for i, n in enumerate(class_names)}
    log.info("classes %s; train %d crops %s; validation %d crops", class_names, len(tr), counts, len(vs))

    # Sampling: balance classes (inverse square-root frequency) and sources (see source_balance).
    cls_n = np.bincount(tr.labels, minlength=len(class_names)).astype(np.float64)
    src = np.array(tr.source)
    src_names, src_inv = np.unique(src, return_inverse=True)
    src_n = np.bincount(src_inv).astype(np.float64)
    w = (1 / np.sqrt(cls_n[tr.labels])) * src_n[src_inv] ** -cfg.source_balance
    sampler = WeightedRandomSampler(torch.as_tensor(w), num_samples=len(tr), replacement=True,  # type: ignore[arg-type]
                                    generator=torch.Generator().manual_seed(cfg.seed))
    train_views = _Views(tr, True, cfg.seed, cfg.erase, cfg.recolour, class_names)
    dl_kw: dict[str, Any] = {"num_workers": cfg.workers, "persistent_workers": cfg.workers > 0} if cfg.workers else {}
    train_dl = DataLoader(train_views, batch_size=cfg.batch, sampler=sampler, drop_last=len(tr) > cfg.batch, **dl_kw)
    val_dl = DataLoader(_Views(vs, False, cfg.seed), batch_size=256, shuffle=False, num_workers=min(cfg.workers, 2))

    device = _device(cfg.device)
    net = MaskNet(len(class_names), cfg.width)
    if cfg.init:
        try:
            n_loaded = load_maskwatch_onnx(net, cfg.init, class_names)
        except ValueError as e:
            raise InputError(f"--init: {e}") from None
        log.info("started from %s (%d tensors; BatchNorm frozen)", cfg.init, n_loaded)
    elif cfg.pretrained and cfg.pretrained.lower() != "none":
        n_loaded = load_imagenet_trunk(net, _imagenet_state(cfg.pretrained))
        log.info("loaded %d ImageNet tensors into the backbone", n_loaded)
    net.to(device)
    # Class weights in the loss: the rarer the class, the more each of its errors costs.
    cw = np.minimum((cls_n.sum() / cls_n / len(cls_n)) ** 0.5, cfg.class_weight_cap)  # a rare class must not swamp the rest
    if "without_mask" in class_names:
        cw[class_names.index("without_mask")] *= cfg.nomask_weight
    loss_w = torch.tensor(cw, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=loss_w, label_smoothing=cfg.label_smoothing)

    history: list[dict[str, Any]] = []
    start_epoch, best_loss, bad_epochs = 0, float("inf"), 0
    total = cfg.head_epochs + cfg.epochs
    last_path, best_path = out / "last.pt", out / "best.pt"
    opt = _optimizer(net, cfg, 0)
    ema = _EMA(net, cfg.ema) if cfg.ema else None
    if cfg.resume and last_path.exists():
        ck = torch.load(last_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["model"])
        if ema is not None and "ema" in ck:
            ema.net.load_state_dict(ck["ema"])
            ema.steps = ck.get("ema_steps", 0)
        elif ema is not None:  # the run had no average yet: start it from the resumed weights
            ema = _EMA(net, cfg.ema)
        start_epoch, history, best_loss, bad_epochs = ck["epoch"] + 1, ck["history"], ck["best_loss"], ck["bad_epochs"]
        opt = _optimizer(net, cfg, start_epoch)
        if ck["phase_epoch"] == _phase_start(cfg, start_epoch):  # same phase: restore the optimiser state too
            opt.load_state_dict(ck["opt"])
        log.info("resumed at epoch %d", start_epoch + 1)

    for epoch in range(start_epoch, total):
        if epoch == cfg.head_epochs and epoch > 0:
            opt = _optimizer(net, cfg, epoch)
        _set_trainable(net, cfg, epoch)
        train_views.epoch = epoch
        t0 = time.time()
        run_loss = run_ok = seen = 0.0
        with tqdm(train_dl, desc=f"epoch {epoch + 1}/{total}", unit="batch", disable=not progress, leave=True) as bar:
            for x, y in bar:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = net(x)
                loss = loss_fn(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema is not None:
                    ema.update(net)
                run_loss += loss.item() * len(y)
                run_ok += float((logits.argmax(1) == y).sum())
                seen += len(y)
                bar.set_postfix(loss=f"{run_loss / seen:.4f}", acc=f"{run_ok / seen:.4f}")
        judged = ema.net if ema is not None else net  # the weights that are validated, kept and exported
        v_loss, v_pred, v_true, _ = _evaluate(judged, val_dl, loss_fn, device)  # type: ignore[arg-type]
        rep = metrics.report(v_true, v_pred, class_names)
        row = {"epoch": epoch + 1, "train_loss": run_loss / max(seen, 1), "train_acc": run_ok / max(seen, 1),
               "val_loss": v_loss, "val_acc": rep["accuracy"], "val_bal_acc": rep["balanced_accuracy_mask_nomask"],
               "seconds": round(time.time() - t0, 1)}
        history.append(row)
        log.info("epoch %d/%d train loss %.4f acc %.4f | val loss %.4f acc %.4f bal %.4f | %.0fs", epoch + 1, total,
                 row["train_loss"], row["train_acc"], v_loss, rep["accuracy"], rep["balanced_accuracy_mask_nomask"] or 0, row["seconds"])
        if on_epoch:
            on_epoch(row)
        present = [c for c in rep["classes"].values() if c["support"]]
        row["val_mean_recall"] = float(np.mean([c["recall"] for c in present]))
        row["val_macro_f1"] = float(np.mean([c["f1"] for c in present]))
        score = {"loss": v_loss, "recall": -row["val_mean_recall"], "f1": -row["val_macro_f1"]}[cfg.select]
        if score < best_loss - 1e-4:
            best_loss, bad_epochs = score, 0
            torch.save({"model": judged.state_dict(), "epoch": epoch + 1, "class_names": class_names, "config": asdict(cfg)}, best_path)
        elif epoch >= cfg.head_epochs:
            bad_epochs += 1
        last = {"model": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "history": history,
                "best_loss": best_loss, "bad_epochs": bad_epochs, "phase_epoch": _phase_start(cfg, epoch)}
        if ema is not None:
            last.update(ema=ema.net.state_dict(), ema_steps=ema.steps)
        torch.save(last, last_path)
        if bad_epochs >= cfg.patience:
            log.info("early stop: no better validation %s for %d epochs", cfg.select, cfg.patience)
            break

    best = torch.load(best_path, map_location=device, weights_only=False)
    net.load_state_dict(best["model"])
    v_loss, v_pred, v_true, v_logits = _evaluate(net, val_dl, loss_fn, device)
    temperature = fit_temperature(v_logits, v_true)
    log.info("calibration: temperature %.3f on %d validation crops", temperature, len(v_true))
    if len(v_true) < MIN_CALIBRATION_CROPS or not 0.26 < temperature < 9.9:
        log.warning("calibration: the temperature (%.3f) was fitted on %d validation crops%s; the model's "
                    "probabilities, and thresholds chosen on them, may not mean what they say: give a larger --val "
                    "(%d faces or more)", temperature, len(v_true),
                    ", at the limit of its range (0.25-10)" if not 0.26 < temperature < 9.9 else "", MIN_CALIBRATION_CROPS)
    rep = metrics.report(v_true, v_pred, class_names)
    by_size = metrics.report_by_size(v_true, v_pred, vs.face_px, class_names)
    text = metrics.format_report(rep, by_size)
    (out / "report.txt").write_text(text + "\n")
    metrics.confusion_png(rep, str(out / "confusion.png"))
    _curves_png(history, out / "curves.png")
    summary = {
        "classes": list(class_names), "train_counts": counts, "val_count": int(len(vs)),
        "sources": sorted(set(tr.source)), "best_epoch": best["epoch"], "seed": cfg.seed,
        "not_face_max_score": cfg.not_face_max_score if NOT_FACE in class_names else None,
    }
    from .export import export_onnx

    export_onnx(net.cpu().eval(), out / MODEL_FILE, class_names, cfg.input_size, cfg.margin, summary, cfg.fp16_weights,
                temperature=temperature)
    result = {"temperature": temperature, "validation": rep, "validation_by_size": by_size, "history": history, "data": summary, "config": asdict(cfg)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    log.info("best epoch %d; the validation report is in %s", best["epoch"], out / "report.txt")
    return result


class _EMA:
    """Exponential moving average of the weights and BatchNorm statistics; the decay ramps up over the first
    steps ((1 + n) / (10 + n)) so the average does not remember the random head."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        import copy

        self.net, self.decay, self.steps = copy.deepcopy(net), decay, 0
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for e, v in zip(self.net.state_dict().values(), net.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                e.copy_(v)


def _phase_start(cfg: TrainConfig, epoch: int) -> int:
    """First epoch of the phase that ``epoch`` belongs to (0: head on the frozen backbone; head_epochs: fine-tuning)."""
    return 0 if epoch < cfg.head_epochs else cfg.head_epochs


def _optimizer(net: MaskNet, cfg: TrainConfig, epoch: int) -> torch.optim.Optimizer:
    if epoch < cfg.head_epochs:
        return torch.optim.Adam(list(net.fc1.parameters()) + list(net.fc2.parameters()), lr=cfg.head_lr)
    return torch.optim.Adam(net.parameters(), lr=cfg.lr)


def _set_trainable(net: MaskNet, cfg: TrainConfig, epoch: int) -> None:
    """Phase 1: backbone frozen (BatchNorm statistics too). Phase 2: blocks from ``finetune_from`` on train."""
    net.train()
    for i, block in enumerate(net.backbone.features):
        trainable = epoch >= cfg.head_epochs and i >= cfg.finetune_from
        for p in block.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            block.eval()
    if getattr(net, "frozen_bn", False):  # started from a file with BatchNorm folded into the convolutions
        for m in net.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.weight.requires_grad_(False)


@torch.no_grad()
def _evaluate(net: MaskNet, dl: DataLoader, loss_fn: nn.Module, device: torch.device) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Validation loss, predicted ids, true ids and logits."""
    net.eval()
    losses, logit_list, trues = 0.0, [], []
    for x, y in dl:
        x, y = x.to(device), y.to(device)
        logits = net(x)
        losses += float(loss_fn(logits, y)) * len(y)
        logit_list.append(logits.cpu().numpy())
        trues.append(y.cpu().numpy())
    n = sum(len(t) for t in trues)
    all_logits = np.concatenate(logit_list)
    return losses / max(n, 1), all_logits.argmax(1), np.concatenate(trues), all_logits


def _curves_png(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    a.set_title("loss")
    b.plot(ep, [h["train_acc"] for h in history], label="train")
    b.plot(ep, [h["val_acc"] for h in history], label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    b.set_title("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
