"""Training commands: train (the mask classifier), train-detector (fine-tune YuNet), soup (average runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..settings import on_off
from ..train.config import DetectorTrainConfig, TrainConfig, default
from .common import (
    _check_outputs,
    _err,
    _say_data_problems,
)
from .options import number

TORCH_HINT = ("Install PyTorch's CPU build first (a plain `pip install torch` can pull a 3 GB CUDA build): "
              "pip install torch --index-url https://download.pytorch.org/whl/cpu, then: pip install 'maskwatch[train]'")


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from ..train.trainer import TrainConfig, train
    except ImportError as e:
        raise InputError(f"training needs the 'train' extra ({e.name} is missing). "
                         f"{TORCH_HINT}") from None
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise InputError(f"--device {args.device}: use 'auto', 'cpu' or 'cuda'")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {args.device}: this PyTorch sees no CUDA GPU; use --device cpu (or auto)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out}: is a file; give a folder for the model and its reports")
    cfg = TrainConfig(data=args.data, out=args.out, val=args.val or [], input_size=args.input_size, epochs=args.epochs,
                      head_epochs=args.head_epochs, batch=args.batch, lr=args.lr, patience=args.patience,
                      pretrained=None if args.pretrained == "none" else args.pretrained, seed=args.seed,
                      workers=args.workers, max_images=args.max_images, force=args.force, resume=args.resume,
                      device=args.device, finetune_from=args.finetune_from, nomask_weight=args.nomask_weight,
                      source_balance=args.source_balance, erase=args.erase, recolour=args.recolour, ema=args.ema, scene_boxes=args.scene_boxes,
                      scene_detector=args.scene_detector,
                      not_face=args.not_face, not_face_max_score=args.not_face_max_score, select=args.select,
                      init=args.init, class_weight_cap=args.class_weight_cap)
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("maskwatch train: %(message)s"))
    logging.getLogger("maskwatch.train").addHandler(handler)
    res = train(cfg, progress=not args.quiet)
    rep = res["validation"]
    from ..eval.metrics import format_report

    _err(format_report(rep, res["validation_by_size"]))
    _err(f"maskwatch: model written to {Path(args.out) / 'mask_classifier.onnx'}; report, confusion.png, curves.png, metrics.json beside it")
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    try:
        from ..train.detector import DetectorTrainConfig, train_detector
    except ImportError as e:
        raise InputError(f"training needs the 'train' extra ({e.name} is missing). "
                         f"{TORCH_HINT}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out}: is a file; give a folder for the detector and its history")
    if out.is_dir() and (out / "last.pt").exists() and not (args.resume or args.force):
        raise InputError(f"--out {args.out}: holds an earlier run; add --resume to continue it, --force to start over, "
                         "or give a new folder")
    if args.force and (out / "last.pt").exists():
        (out / "last.pt").unlink()
    cfg = DetectorTrainConfig(data=args.data, val=args.val or [], out=args.out, base=args.base, epochs=args.epochs,
                              batch=args.batch, lr=args.lr, crop=args.crop, min_side=args.min_side,
                              max_side=args.max_side, ignore_score=args.ignore_score, bare_weight=args.bare_weight, val_det_size=args.val_det_size,
                              seed=args.seed, threads=args.threads, limit=args.max_images)

    def report(row: dict) -> None:
        ap = f", val face AP {row['val_face_ap']:.3f} recall {row['val_recall']:.3f}" if "val_face_ap" in row else ""
        loss = f" loss {row['train_loss']:.3f} ({row['seconds']:.0f} s)" if "train_loss" in row else " (before training)"
        _err(f"maskwatch train-detector: epoch {row['epoch']}{loss}{ap}{' *best*' if row.get('best') else ''}")

    try:
        res = train_detector(cfg, resume=args.resume, progress=not args.quiet, on_epoch=report)
    except KeyboardInterrupt:
        _err("maskwatch train-detector: stopped; the same command with --resume continues from the last finished epoch")
        raise
    chosen = (f"best validation face AP {res['best_val_face_ap']:.3f}" if args.val
              else "no validation set (--val): the last epoch is kept")
    _err(f"maskwatch: detector written to {out / 'face_detector.onnx'} ({chosen}); "
         f"use it with --face-detector {out / 'face_detector.onnx'}; history.json beside it")
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401  (the train extra)

        from ..train.soup import average_models, members
    except ImportError as e:
        raise InputError(f"averaging models needs the 'train' extra ({e.name} is missing). "
                         f"{TORCH_HINT}") from None
    from ..datasets import load_sources

    if len(args.models) >= 2:  # fewer: average_models says so
        _check_outputs([Path(args.out)], members(args.models), args.force)  # never an input, and before --val is read
    val = load_sources(args.val) if args.val else None  # bad sources are refused before anything is written
    if val is not None:
        _say_data_problems(val.warnings)
    meta = average_models(args.models, args.out, force=args.force)
    _err(f"maskwatch: averaged {len(meta['data']['soup'])} models into {args.out}")
    if args.val:
        from tqdm import tqdm

        from ..train.calibration import calibrate

        unread: list[str] = []
        with tqdm(total=len(val.images) if val else 0, desc="calibrating", unit="img", disable=args.quiet) as bar:
            t, n = calibrate(args.out, args.val, args.scene_detector, progress=bar.update, ds=val, skipped=unread)
        _say_data_problems(skipped=unread)
        _err(f"maskwatch: temperature {t:.3f}, fitted on {n} faces of {', '.join(args.val)}")
    else:
        _err(f"maskwatch: temperature {meta['temperature']:.3f}, the geometric mean of the members' (not fitted on data: "
             "pass --val SOURCES to calibrate the soup's probabilities)")
    _err(f"check it with: maskwatch evaluate {args.out} DATA")
    return 0


def parser_train(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    t = cmd("train", "train a mask classifier on class folders and/or VOC/YOLO scene sets (needs the 'train' extra)",
            "maskwatch train data/faces data/scenes@train --out runs/mine --epochs 20")
    t.add_argument("data", nargs="+", metavar="DATA", help="class folders (with_mask/, without_mask/, mask_incorrect/) or VOC/YOLO scene sets; PATH@train / PATH@val / PATH@test pick a fixed split (about 5/8, 1/8 and 1/4 of the images, near-duplicates kept together)")
    t.add_argument("--out", required=True, help="output folder (model, report, plots, log)")
    t.add_argument("--val", nargs="*", help="explicit validation sources (default: a stratified 80/20 split of DATA)")
    t.add_argument("--input-size", type=int, default=default(TrainConfig, "input_size"), help="classifier input, pixels")
    t.add_argument("--epochs", type=int, default=default(TrainConfig, "epochs"), help="fine-tuning epochs (early stopping may end sooner)")
    t.add_argument("--head-epochs", type=int, default=default(TrainConfig, "head_epochs"), help="epochs on the frozen backbone first")
    t.add_argument("--finetune-from", type=int, default=default(TrainConfig, "finetune_from"), help="first backbone block trained in fine-tuning (0 = all)")
    t.add_argument("--batch", type=int, default=default(TrainConfig, "batch"), help="batch size")
    t.add_argument("--lr", type=float, default=default(TrainConfig, "lr"), help="Adam learning rate for fine-tuning")
    t.add_argument("--patience", type=int, default=default(TrainConfig, "patience"), help="early stopping: epochs without a better validation score")
    t.add_argument("--select", choices=["f1", "recall", "loss"], default=default(TrainConfig, "select"),
                   help="the epoch kept: best macro F1 over the classes on the validation crops, best mean recall, or lowest "
                        "validation loss; the kept model's probabilities are then calibrated on the validation crops")
    t.add_argument("--pretrained", default="imagenet", help="'imagenet', a torchvision mobilenet_v2 .pth, or 'none'")
    t.add_argument("--init", metavar="MODEL.onnx",
                   help="start from a classifier made by maskwatch train (e.g. the previous default) instead of ImageNet: "
                        "its weights, BatchNorm frozen; classes it lacks (not_face) start random")
    t.add_argument("--seed", type=int, default=default(TrainConfig, "seed"), help="random seed (split, sampling, augmentation)")
    t.add_argument("--workers", type=int, default=default(TrainConfig, "workers"), help="data-loading processes (one per core, at most 8)")
    t.add_argument("--device", default=default(TrainConfig, "device"), help="'auto', 'cpu' or 'cuda'")
    t.add_argument("--max-images", type=int, default=default(TrainConfig, "max_images"), help="use at most this many images per source (0 = all)")
    t.add_argument("--nomask-weight", type=float, default=default(TrainConfig, "nomask_weight"), help="extra loss weight on without_mask (a bare face called masked is the costly error)")
    t.add_argument("--class-weight-cap", type=float, default=default(TrainConfig, "class_weight_cap"),
                   help="a rare class's extra loss weight (the square root of its rarity) is capped here; 1 = none, the "
                        "sampler's balancing only (rare classes weighted twice over get over-predicted)")
    t.add_argument("--source-balance", type=float, default=default(TrainConfig, "source_balance"), help="sampling weight per source ~ size^-x: 0 = as the data comes, 1 = every source equally")
    t.add_argument("--erase", type=float, default=default(TrainConfig, "erase"), help="probability of random erasing (a rectangle of noise or colour) per training view")
    t.add_argument("--recolour", type=float, default=default(TrainConfig, "recolour"),
                   help="probability (0-1; 0 = off) per with_mask training view of giving the mask another colour "
                        "(hue, saturation, brightness: black, white and vivid masks)")
    t.add_argument("--scene-boxes", choices=["truth", "detector"], default=default(TrainConfig, "scene_boxes"),
                   help="scene sets (VOC/YOLO): crop around the annotated boxes, or around the face detector's box that matches "
                        "each one ('detector': IoU >= 0.5, the framing the classifier gets at run time; faces it misses keep "
                        "their annotated box)")
    t.add_argument("--scene-detector", default=default(TrainConfig, "scene_detector"), metavar="NAME:SIZES",
                   help="the face detector and det sizes whose boxes frame scene faces for --scene-boxes detector (and give the "
                        "not_face crops); the default is the photo default's, so training sees the framing of run time")
    t.add_argument("--not-face", type=on_off, default="on", metavar="on|off",
                   help="also learn a not_face class from the face detector's boxes that overlap no annotated face (IoU < 0.3) "
                        "in the scene sets: hands, bags, backs of heads. At run time such boxes are removed (needs --scene-boxes detector)")
    t.add_argument("--not-face-max-score", type=float, default=default(TrainConfig, "not_face_max_score"),
                   help="leave out of not_face the boxes the face detector scores above this: most are real faces the "
                        "annotators skipped")
    t.add_argument("--ema", type=float, default=default(TrainConfig, "ema"), help="keep an exponential moving average of the weights with this decay per step and export it (0 = off; e.g. 0.999)")
    t.add_argument("--force", action="store_true", help="overwrite a model already in --out")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")


def parser_train_detector(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    td = cmd("train-detector", "fine-tune the YuNet face detector on VOC/YOLO scene sets (needs the 'train' extra)",
             "maskwatch train-detector data/scenes@train --val data/scenes@val --out runs/detector --epochs 20")
    td.add_argument("data", nargs="+", metavar="DATA", help="VOC or YOLO scene sets with face boxes; PATH@train picks the fixed training split")
    td.add_argument("--out", required=True, help="output folder (face_detector.onnx, last.onnx, last.pt, history.json)")
    td.add_argument("--val", nargs="*", help="scene sets that choose the epoch kept (face AP@0.5, one pass at --val-det-size)")
    td.add_argument("--base", default=default(DetectorTrainConfig, "base"), help="YuNet ONNX to start from: registry name or path")
    td.add_argument("--epochs", type=number(int, 1), default=default(DetectorTrainConfig, "epochs"), help="passes over the training photos (about 90 s each for 1,500 photos on 2 cores)")
    td.add_argument("--batch", type=number(int, 1), default=default(DetectorTrainConfig, "batch"), help="views per step")
    td.add_argument("--lr", type=number(float, 0, 1, above=True), default=default(DetectorTrainConfig, "lr"), help="AdamW peak learning rate (warm-up, then cosine decay)")
    td.add_argument("--crop", type=number(int, 32, 4096), default=default(DetectorTrainConfig, "crop"), help="side of the square training view, pixels (multiple of 32)")
    td.add_argument("--min-side", type=number(int, 32, 8192), default=default(DetectorTrainConfig, "min_side"), help="smallest longer side a photo is rescaled to before cropping, pixels")
    td.add_argument("--max-side", type=number(int, 32, 8192), default=default(DetectorTrainConfig, "max_side"), help="largest longer side a photo is rescaled to before cropping, pixels")
    td.add_argument("--ignore-score", type=number(float, 0, 1), default=default(DetectorTrainConfig, "ignore_score"),
                    help="boxes the original detector finds at this score on no annotated face are ignored, not taught as "
                         "background (annotators leave many real faces unboxed)")
    td.add_argument("--bare-weight", type=number(float, 0, 100, above=True), default=default(DetectorTrainConfig, "bare_weight"),
                    help="loss weight of bare faces (without_mask) against 1 for masked ones: more finds more bare faces, "
                         "whose misses are missed alerts")
    td.add_argument("--val-det-size", type=number(int, 64, 4096), default=default(DetectorTrainConfig, "val_det_size"), help="detection size for the validation pass")
    td.add_argument("--seed", type=int, default=default(DetectorTrainConfig, "seed"), help="random seed (views, order)")
    td.add_argument("--threads", type=number(int, 0, 256), default=default(DetectorTrainConfig, "threads"), help="PyTorch threads (0 = one per core)")
    td.add_argument("--max-images", type=number(int, 0), default=default(DetectorTrainConfig, "limit"), help="use only the first N training photos (0 = all)")
    td.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    td.add_argument("--force", action="store_true", help="start over in an --out folder that holds an earlier run")


def parser_soup(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    so = cmd("soup", "average the weights of models trained from the same start (same --seed, other settings): one model, "
             "usually better than each (a 'model soup'); needs the 'train' extra",
             "maskwatch soup runs/a/mask_classifier.onnx runs/b/mask_classifier.onnx --out runs/soup.onnx")
    so.add_argument("models", nargs="+", metavar="MODEL",
                    help="two or more classifier .onnx files from `maskwatch train` (or 'mask_classifier', the bundled one), "
                         "each once")
    so.add_argument("--out", required=True, help="the averaged model (.onnx); never one of the MODELs")
    so.add_argument("--force", action="store_true", help="overwrite --out if it exists (a MODEL is never overwritten)")
    so.add_argument("--val", nargs="+", metavar="SOURCE", default=None,
                    help="labelled class folders or scene sets (e.g. SET@val: never the data you report on) to fit the "
                         "soup's temperature on, so its probabilities are calibrated; without it the soup gets the "
                         "geometric mean of its members' temperatures")
    so.add_argument("--scene-detector", default=default(TrainConfig, "scene_detector"), metavar="NAME:SIZES",
                    help="the face detector whose boxes frame the scene faces of --val, as at run time")
