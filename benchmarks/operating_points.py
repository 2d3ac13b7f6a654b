"""Choose the operating point from data: sweep the face-score and per-label probability thresholds on scene sets
and print the precision and recall of each label, end to end (face detector + classifier), per mode.

A box counts for a label when it is matched one to one (IoU >= 0.5, highest face score first) with an annotated
face of that label. A label shown on a face of another label, or on no annotated face, is a false alarm. A face
below either threshold is shown grey "uncertain": neither right nor wrong, but not found for recall. Boxes the
classifier calls not_face are removed (both columns are printed).

    python benchmarks/operating_points.py [SCENES ...] [--mode photo|live|both] [--classifier PATH]
        [--target 0.90] [--cache DIR] [--report SCENES ... [--before KEY=V,...]]

SCENES default to the @val split of every set in ../shared/data/detect but maskdetect-cn: choose on @val, report on
@test (`--report` with the chosen thresholds measures them on other sets, e.g. the @test splits, without choosing).
maskdetect-cn is left out of the choice because its boxes take in whole heads: the face detector's boxes meet them
at IoU 0.3-0.5 (face recall 0.08 at IoU 0.5), so on it every box shown counts as a false alarm whatever its label,
and its 11 @val photos moved the green threshold from 0.76 to 0.96 (MODEL_CARD.md). It is still measured.

`--before` compares the chosen point with another (the previous one, say) on each `--report` set: after minus
before, with a paired interval over resamples of the photos, which tells a real change from the luck of the draw
where two separate intervals would overlap.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)
from tqdm import tqdm

from maskwatch.datasets import load_source
from maskwatch.detections import NOT_FACE
from maskwatch.eval.detection import face_outcomes, percentile_band, photo_resamples
from maskwatch.models import resolve
from maskwatch.pipeline import Detector
from maskwatch.settings import LIVE, PHOTO, flip_mode

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
CHOOSE_SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021")  # maskdetect-cn's whole-head boxes: module docstring
LABELS = {"without_mask": "sure_nomask", "with_mask": "sure_mask", "mask_incorrect": "sure_incorrect"}
TARGET_INCORRECT = 0.60  # orange is the rare, hard class: precision 0.60 (issue 13's classifier target)
FACE_GRID = np.round(np.arange(0.5, 0.951, 0.05), 2)
# 1.01: never remove. Not below 0.5: such a gate removes boxes that are more likely faces than not, and a sure label
# (threshold >= 0.5) never depends on it anyway; the gate only decides which grey boxes disappear.
NOT_FACE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
PROB_GRID = np.round(np.arange(0.40, 0.991, 0.01), 2)
# A red or green box says its label is the more likely answer: never below 0.5 ("No Mask 45 %" is a contradiction).
# Orange, the rare class, may stand at 0.4 as the likeliest of four.
MIN_PROB = {"without_mask": 0.5, "with_mask": 0.5, "mask_incorrect": 0.4}
MIN_DETECTOR_SCORE = 0.5  # the detector's own threshold; the sweep starts there


def outcomes(specs: list[str], mode: str, classifier: str, cache: Path | None, flip: bool | str | None = None,
             face_detector: str | None = None) -> dict[str, Any]:
    """Every box of the mode's pipeline on the scenes (thresholds off, not_face boxes kept), cached by settings.
    ``flip``, ``face_detector``: instead of the preset's."""
    preset = dict(PHOTO if mode == "photo" else LIVE)
    if flip is not None:
        preset["flip"] = flip
    if face_detector is not None:
        preset["face_detector"] = face_detector
    model = resolve(classifier)  # the file itself: "mask_classifier" names whichever model is bundled now
    fd = preset.get("face_detector", "yunet")
    fd_file = resolve(fd) if not str(fd).endswith(".onnx") else Path(fd)
    key = hashlib.sha1(json.dumps([5, specs, mode, str(model), hashlib.sha256(model.read_bytes()).hexdigest(), str(preset["det_size"]),
                                   # flip only where it differs from the presets' of earlier rounds (their caches keep their keys)
                                   *([] if preset["flip"] == (mode == "photo") else [str(preset["flip"])]),
                                   hashlib.sha256(fd_file.read_bytes()).hexdigest()]).encode()).hexdigest()[:10]
    path = cache / f"outcomes-{mode}-{key}.npz" if cache else None
    if path and path.exists():
        z = np.load(path, allow_pickle=True)
        return {k: (z[k].item() if z[k].dtype == object and z[k].ndim == 0 else z[k]) for k in z.files}
    det = Detector(face_detector=fd, det_size=preset["det_size"], flip=preset["flip"], classifier=classifier, score_threshold=MIN_DETECTOR_SCORE,
                   nomask_cost=1.0, keep_not_face=True)
    parts = []
    for spec in specs:
        ds = load_source(spec)
        with tqdm(total=len(ds.images), desc=f"{mode} {Path(spec).name}", unit="img") as bar:
            parts.append(face_outcomes(det, ds, progress=bar.update))
    offsets = np.cumsum([0] + [int(p["n_images"]) for p in parts])  # photo ids unique over the sets
    out = {
        "image": np.concatenate([p["image"] + off for p, off in zip(parts, offsets)]),
        "gt_image": np.concatenate([p["gt_image"] + off for p, off in zip(parts, offsets)]),
        "class_names": np.array(parts[0]["class_names"], dtype=object),
        "face_score": np.concatenate([p["face_score"] for p in parts]),
        "probs": np.concatenate([p["probs"] for p in parts]),
        "truth": np.concatenate([p["truth"] for p in parts]),
        "gt_labels": np.concatenate([p["gt_labels"] for p in parts]),
        "best_iou": np.concatenate([p["best_iou"] for p in parts]),
        "best_label": np.concatenate([p["best_label"] for p in parts]),
        "set": np.concatenate([[Path(spec.split("@")[0]).name] * len(p["face_score"]) for spec, p in zip(specs, parts)]),
        "n_images": np.array(sum(p["n_images"] for p in parts)),
    }
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)  # type: ignore[arg-type]  # numpy's stub reads **kwargs as allow_pickle
    return out


def shown_right(o: dict[str, Any], label: str, face_t: float, prob_t: float, nf_t: float | None = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per box: shown with ``label`` at these thresholds, and of those, on an annotated face of that label.
    As ``MaskClassifier.decide`` with cost 1: the label is the best face class; a box with P(not_face) >= nf_t is
    removed (``nf_t`` None: not_face off)."""
    names = list(o["class_names"])
    probs = o["probs"]
    keep = o["face_score"] >= face_t
    faces = probs.copy()
    if NOT_FACE in names:
        faces[:, names.index(NOT_FACE)] = -1.0
        if nf_t is not None:
            keep &= probs[:, names.index(NOT_FACE)] < nf_t
    arg = faces.argmax(1)
    c = names.index(label)
    shown = keep & (arg == c) & (probs[:, c] >= prob_t)
    return shown, shown & (o["truth"] == label)


def rates(o: dict[str, Any], label: str, face_t: float, prob_t: float, nf_t: float | None = 0.5) -> tuple[float, float, int, int]:
    """(precision, recall, false alarms, shown) of ``label`` at these thresholds (``nf_t`` None: not_face off)."""
    if label not in list(o["class_names"]):
        return float("nan"), float("nan"), 0, 0
    shown, right = shown_right(o, label, face_t, prob_t, nf_t)
    n_gt = int((o["gt_labels"] == label).sum())
    n_shown = int(shown.sum())
    return (right.sum() / n_shown if n_shown else float("nan")), (right.sum() / n_gt if n_gt else float("nan")), n_shown - int(right.sum()), n_shown


def f_beta(p: float, r: float, beta: float = 0.5) -> float:
    """F0.5 weighs precision twice as much as recall: a red box must mean a bare face."""
    if np.isnan(p) or np.isnan(r) or p + r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (beta**2 * p + r)


def choose(o: dict[str, Any], target: float) -> tuple[dict[str, float], list[str]]:
    """The face-score, not_face and per-label probability thresholds. For each face and not_face threshold, each
    label's probability threshold is the lowest whose precision reaches its target (the most recall at that
    precision); where no threshold reaches it, the one with the best F0.5. The face and not_face thresholds are
    those with the best summed F0.5 of with_mask and without_mask (ties: the higher face threshold). Returns the
    settings and the table's lines (per face threshold, its best not_face threshold)."""
    has_nf = NOT_FACE in list(o["class_names"])
    lines, best, best_key = [], None, -1.0
    for f in FACE_GRID:
        best_row, best_total = None, -1.0
        for nf in (NOT_FACE_GRID if has_nf else (1.01,)):
            row: dict[str, Any] = {"sure_face_score": float(f), "not_face_threshold": float(min(nf, 1.0))}
            total = 0.0
            for label, setting in LABELS.items():
                goal = TARGET_INCORRECT if label == "mask_incorrect" else target
                curve = [(float(t), *rates(o, label, f, t, nf)[:2]) for t in PROB_GRID if t >= MIN_PROB[label]]
                met = [c for c in curve if not np.isnan(c[1]) and c[1] >= goal]
                pick = met[0] if met else max(curve, key=lambda c: f_beta(c[1], c[2]))
                row[setting], row[label] = pick[0], (pick[1], pick[2], bool(met))
                if label != "mask_incorrect":
                    total += f_beta(pick[1], pick[2])
            if total > best_total + 1e-9:
                best_row, best_total = row, total
        assert best_row is not None
        lines.append(f"{f:>10.2f} | {best_row['not_face_threshold']:>8.2f} | " + " | ".join(
            f"{best_row[s]:.2f}: P {best_row[lab][0]:.3f} R {best_row[lab][1]:.3f}{'' if best_row[lab][2] else ' (target not met)'}"
            for lab, s in LABELS.items()))
        if best_total >= best_key - 1e-9:
            best, best_key = best_row, best_total
    assert best is not None
    return {k: v for k, v in best.items() if k.startswith("sure_") or k == "not_face_threshold"}, lines


def where_false_alarms_lie(o: dict[str, Any], point: dict[str, float]) -> None:
    """Red boxes shown at the point that are not on an annotated bare face, by what they lie on, per set."""
    names = list(o["class_names"])
    probs = o["probs"].copy()
    keep = o["face_score"] >= point["sure_face_score"]
    if NOT_FACE in names:
        keep &= probs[:, names.index(NOT_FACE)] < point.get("not_face_threshold", 1.01)
        probs[:, names.index(NOT_FACE)] = -1.0
    c = names.index("without_mask")
    red = keep & (probs.argmax(1) == c) & (probs[:, c] >= point["sure_nomask"]) & (o["truth"] != "without_mask")
    shown = keep & (probs.argmax(1) == c) & (probs[:, c] >= point["sure_nomask"])
    print("false red boxes lie on (the share of red boxes on a bare face, counting those framed differently: 'loose'):")
    for s in sorted(set(o["set"])):
        m = red & (o["set"] == s)
        iou, other = o["best_iou"][m], o["truth"][m] == ""
        bare = other & (iou >= 0.3) & (o["best_label"][m] == "without_mask")
        n_shown = int((shown & (o["set"] == s)).sum())
        loose = (n_shown - int(m.sum()) + int(bare.sum())) / n_shown if n_shown else float("nan")
        print(f"  {s:>17}: {int(m.sum()):>3} | masked or worn-wrongly face {int((~other).sum()):>3} | "
              f"a face framed differently (IoU 0.3-0.5) {int((other & (iou >= 0.3)).sum()):>3}, of them bare {int(bare.sum()):>3} | "
              f"no annotated face (IoU < 0.3) {int((iou < 0.3).sum()):>3} | loose precision {loose:.3f}")


def report(o: dict[str, Any], point: dict[str, float], title: str) -> None:
    n_img = int(o["n_images"])
    print(f"\n{title}: {n_img} photos, {len(o['gt_labels'])} annotated faces, {len(o['face_score'])} boxes")
    print(f"{'label':>15} | {'threshold':>9} | {'precision':>9} | {'recall':>6} | false alarms / 100 photos | same, not_face off")
    for label, setting in LABELS.items():
        p, r, fa, _ = rates(o, label, point["sure_face_score"], point[setting], point.get("not_face_threshold", 1.01))
        _, _, fa_off, _ = rates(o, label, point["sure_face_score"], point[setting], None)
        print(f"{label:>15} | {point[setting]:>9.2f} | {p:>9.3f} | {r:>6.3f} | {100 * fa / n_img:>25.1f} | {100 * fa_off / n_img:.1f}")
    base = {"sure_face_score": 0.5, "sure_nomask": 0.0, "sure_mask": 0.0, "sure_incorrect": 0.0}
    print("no thresholds (every box above face score 0.5 shown with its argmax label):")
    for label, setting in LABELS.items():
        p, r, fa, _ = rates(o, label, 0.5, base[setting], None)
        print(f"{label:>15} | {'-':>9} | {p:>9.3f} | {r:>6.3f} | {100 * fa / n_img:>25.1f}")


def paired_difference(o: dict[str, Any], before: dict[str, float], after: dict[str, float], resamples: int = 1000,
                      level: float = 0.9, seed: int = 0) -> dict[str, dict[str, tuple[float, float, float]]]:
    """after - before of red and green precision, recall and false alarms per 100 photos on the same photos, with a
    ``level`` interval over ``resamples`` resamples of the photos (both points on each resample: paired, so far
    sharper than two separate intervals). Per label and figure: (difference, low, high)."""
    n = int(o["n_images"])
    w = photo_resamples(n, resamples, seed)  # (resamples, photos)
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for label in ("without_mask", "with_mask"):
        gt = np.bincount(o["gt_image"][o["gt_labels"] == label], minlength=n).astype(np.float64)
        figs = []
        for point in (before, after):
            shown, right = shown_right(o, label, point["sure_face_score"], point[LABELS[label]], point.get("not_face_threshold", 1.01))
            s_n = np.bincount(o["image"][shown], minlength=n).astype(np.float64)
            r_n = np.bincount(o["image"][right], minlength=n).astype(np.float64)
            full = np.vstack([np.ones(n), w])  # row 0: the photos as they are
            S, R, G = full @ s_n, full @ r_n, full @ gt
            with np.errstate(invalid="ignore", divide="ignore"):
                figs.append({"precision": R / S, "recall": R / G, "false alarms / 100 photos": 100 * (S - R) / n})
        out[label] = {}
        for k in figs[0]:
            d = figs[1][k] - figs[0][k]
            band = percentile_band(d[1:], level)  # a resample with no box shown (or no face) has no precision (recall)
            out[label][k] = (float(d[0]), *(band or (float("nan"), float("nan"))))
    return out


def point_arg(text: str) -> dict[str, float]:
    """'sure_face_score=0.95,sure_mask=0.89' -> a partial operating point."""
    out = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        if k.strip() not in (*LABELS.values(), "sure_face_score", "not_face_threshold"):
            raise argparse.ArgumentTypeError(f"{k!r} is not an operating-point setting")
        out[k.strip()] = float(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*", help="scene sets to choose on (default: the @val split of every set but maskdetect-cn)")
    ap.add_argument("--mode", choices=["photo", "live", "both"], default="both")
    ap.add_argument("--classifier", default="mask_classifier")
    ap.add_argument("--target", type=float, default=0.90, help="precision wanted for with_mask and without_mask")
    ap.add_argument("--report", nargs="*", default=None, metavar="SCENES",
                    help="measure the chosen point on these sets too (e.g. the @test splits; never chosen on)")
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep the pipeline's outputs in between runs")
    ap.add_argument("--flip", type=flip_mode, default=None, help="on|off|auto instead of the mode's preset")
    ap.add_argument("--face-detector", default=None, help="a registry name or YuNet ONNX path instead of the preset's")
    ap.add_argument("--before", type=point_arg, default=None, metavar="KEY=V,...",
                    help="with --report: also print the chosen point minus this one (e.g. the previous point, "
                         "'sure_face_score=0.95,sure_mask=0.89,sure_nomask=0.72'; keys not given are the chosen "
                         "point's) on the same photos, with a paired 90 %% interval over 1000 resamples of them")
    args = ap.parse_args()
    specs = args.scenes or [f"{DETECT / s}@val" for s in CHOOSE_SETS]
    for mode in (["photo", "live"] if args.mode == "both" else [args.mode]):
        o = outcomes(specs, mode, args.classifier, args.cache, args.flip, args.face_detector)
        point, lines = choose(o, args.target)
        print(f"\n== {mode} mode, chosen on {', '.join(Path(s).name for s in specs)}; target precision {args.target} "
              f"(mask_incorrect {TARGET_INCORRECT})")
        print(f"{'face score':>10} | not_face | " + " | ".join(f"{lab} (threshold: P, R)" for lab in LABELS))
        print("\n".join(lines))
        print(f"chosen: {json.dumps(point)}")
        report(o, point, f"{mode} mode on the sets it was chosen on")
        where_false_alarms_lie(o, point)
        for spec in args.report or []:
            o_spec = outcomes([spec], mode, args.classifier, args.cache, args.flip, args.face_detector)
            report(o_spec, point, f"{mode} mode on {Path(spec).name}")
            where_false_alarms_lie(o_spec, point)
            if args.before is not None:
                before = {**point, **args.before}
                print(f"chosen point minus {json.dumps(args.before)}, same photos (90 % paired interval, 1000 resamples):")
                for label, figs in paired_difference(o_spec, before, point).items():
                    print(f"  {label:>13}: " + " | ".join(f"{k} {d:+.3f} ({a:+.3f} to {b:+.3f})" for k, (d, a, b) in figs.items()))


if __name__ == "__main__":
    main()
