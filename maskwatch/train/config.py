"""The training settings, in a module without PyTorch: the command line takes its options' defaults from here, so
``maskwatch --help`` works without the train extra and each default is written once."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any

from ..crops import DEFAULT_MARGIN
from ..errors import InputError
from ..settings import PHOTO_DET_SIZE, PHOTO_FACE_DETECTOR, train_workers


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls`` (for argparse)."""
    f = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    return f.default_factory() if f.default is MISSING else f.default


@dataclass
class TrainConfig:
    """Every training setting; the same names are the CLI's options (``--input-size`` etc.)."""

    data: list[str]
    out: str
    val: list[str] = field(default_factory=list)  # explicit validation sources; else a stratified split of data
    input_size: int = 64  # pixels, square
    width: float = 1.0  # MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only)
    margin: float = DEFAULT_MARGIN  # crop margin around the face box, fraction of its longer side
    pretrained: str | None = "imagenet"  # "imagenet", a .pth path, or None (random init)
    init: str | None = None  # start from this maskwatch classifier (.onnx) instead: BatchNorm frozen, new classes random
    epochs: int = 20  # fine-tuning epochs (upper bound; early stopping may end sooner)
    head_epochs: int = 3  # epochs on the frozen backbone first
    batch: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    finetune_from: int = 8  # backbone block index from which layers are trained in phase 2 (0 = all)
    patience: int = 5  # early stopping: epochs without a better validation score (see select)
    select: str = "f1"  # the epoch kept: best validation "f1" (macro F1 over the classes), "recall" (mean recall over
    # the classes) or lowest "loss"; calibration then fixes over-confidence. F1 does not reward over-predicting the
    # rare classes (mask_incorrect, not_face), which mean recall does
    val_frac: float = 0.2
    seed: int = 0
    workers: int = field(default_factory=train_workers)  # data-loading processes: one per core, at most 8
    device: str = "auto"
    max_images: int = 0  # use at most this many images per source (0 = all); for quick tests
    force: bool = False
    resume: bool = False
    label_smoothing: float = 0.0
    source_balance: float = 0.5  # sampling weight per source ~ n_source^-x: 0 = as the data comes, 1 = equal sources
    nomask_weight: float = 2.0  # extra loss weight on without_mask: a bare face called masked is the costly error
    class_weight_cap: float = 3.0  # loss weight of a rare class (sqrt of its rarity) capped here; 1 = none beyond the
    # sampler's balancing, which already shows rare classes more often
    erase: float = 0.0  # probability of random erasing per training view (0 = off)
    recolour: float = 0.0  # probability per masked training view of a new colour for the mask (0 = off)
    scene_detector: str = f"{PHOTO_FACE_DETECTOR}:{PHOTO_DET_SIZE}"  # NAME:SIZES whose boxes frame scene faces (and give not_face): the photo default
    scene_boxes: str = "detector"  # scene sets: crop around the "truth" boxes, or the face "detector"'s boxes matched
    # to them (IoU >= 0.5; the run-time framing)
    not_face: bool = True  # learn a not_face class from the detector's boxes on no annotated face (needs scene_boxes detector)
    not_face_max_score: float = 0.8  # leave out not_face boxes the detector scores above this: mostly real faces the
    # annotators skipped (looked at by eye; MODEL_CARD.md)
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0 = off; e.g. 0.999)
    fp16_weights: bool = True  # store ONNX weights as float16 (computed in float32): half the file size

    def validate(self) -> None:
        """Check every value's range; the message names the setting and its valid values."""
        checks = [
            ("input_size", 32 <= self.input_size <= 512, "between 32 and 512 (pixels)"),
            ("epochs", self.epochs >= 0, "0 or more"),
            ("head_epochs", self.head_epochs >= 0, "0 or more"),
            ("epochs + head_epochs", self.epochs + self.head_epochs >= 1, "at least 1 in total"),
            ("batch", self.batch >= 1, "1 or more"),
            ("lr", 0 < self.lr < 1, "between 0 and 1"),
            ("head_lr", 0 < self.head_lr < 1, "between 0 and 1"),
            ("val_frac", 0 < self.val_frac < 1, "between 0 and 1"),
            ("margin", 0 <= self.margin <= 2, "between 0 and 2"),
            ("patience", self.patience >= 1, "1 or more"),
            ("workers", self.workers >= 0, "0 or more"),
            ("max_images", self.max_images >= 0, "0 (all) or more"),
            ("width", self.width > 0, "above 0"),
            ("finetune_from", 0 <= self.finetune_from <= 18, "between 0 and 18 (MobileNetV2 blocks)"),
            ("erase", 0 <= self.erase <= 1, "between 0 and 1 (a probability)"),
            ("recolour", 0 <= self.recolour <= 1, "between 0 and 1 (a probability)"),
            ("nomask_weight", 0 < self.nomask_weight <= 100, "above 0 and at most 100"),
            ("class_weight_cap", 1 <= self.class_weight_cap <= 100, "between 1 and 100"),
            ("source_balance", 0 <= self.source_balance <= 1, "between 0 and 1"),
            ("scene_boxes", self.scene_boxes in ("truth", "detector"), "truth or detector"),
            ("ema", 0 <= self.ema < 1, "0 (off) or a decay below 1, e.g. 0.999"),
            ("select", self.select in ("f1", "recall", "loss"), "f1, recall or loss"),
            ("not_face_max_score", 0 < self.not_face_max_score <= 1, "above 0 and at most 1 (a face score)"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise InputError(f"'{name}' is invalid. Valid values are {valid}")
        if not self.data:
            raise InputError("no training data given; pass one or more folders")
        if self.not_face and self.scene_boxes != "detector":
            raise InputError("'not_face' needs 'scene_boxes' detector: its crops are the face detector's boxes on no annotated "
                             "face; pass --scene-boxes detector, or --not-face off")


@dataclass
class DetectorTrainConfig:
    data: list[str] = field(default_factory=list)  # scene sets, e.g. PATH@train
    val: list[str] = field(default_factory=list)  # scene sets for choosing the epoch, e.g. PATH@val
    out: str = "runs/detector"
    base: str = "yunet"  # registry name or path of the YuNet ONNX to start from
    epochs: int = 20
    batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 5e-4
    crop: int = 640
    min_side: int = 480  # the photo's longer side after the random rescale, pixels
    max_side: int = 1600
    ignore_score: float = 0.7
    bare_weight: float = 1.0  # loss weight of bare (without_mask) faces against 1 for the others
    min_face: float = 4.0  # annotated faces smaller than this (pixels of the view) are ignored, not taught
    val_det_size: int = 1024  # one pass at this longer side when measuring validation AP
    seed: int = 0
    threads: int = 0  # torch threads; 0 = torch's default
    limit: int = 0  # use only the first N training photos (tests)
