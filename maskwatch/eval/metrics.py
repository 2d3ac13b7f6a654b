"""Classification metrics in numpy: report per class, confusion matrix, results by face size."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

SIZE_BINS: tuple[tuple[str, float, float], ...] = (("<16", 0, 16), ("16-32", 16, 32), ("32-64", 32, 64), (">64", 64, 1e9))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def report(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class; accuracy; balanced accuracy over with_mask/without_mask."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(y_true, y_pred, len(class_names))
    per: dict[str, dict[str, float]] = {}
    for i, name in enumerate(class_names):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        per[name] = {"precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)) if p + r else 0.0, "support": int(support)}
    two = [c for c in ("with_mask", "without_mask") if c in class_names and per[c]["support"]]
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "balanced_accuracy_mask_nomask": float(np.mean([per[c]["recall"] for c in two])) if two else None,
        "classes": per,
        "confusion": cm.tolist(),
        "class_names": list(class_names),
    }
    return out


def report_by_size(y_true: np.ndarray, y_pred: np.ndarray, face_px: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name, lo, hi in SIZE_BINS:
        m = (face_px >= lo) & (face_px < hi)
        if m.any():
            r = report(y_true[m], y_pred[m], class_names)
            out[name] = {k: r[k] for k in ("n", "accuracy", "balanced_accuracy_mask_nomask")} | {
                "recall": {c: v["recall"] for c, v in r["classes"].items() if v["support"]}
            }
    return out


def format_report(r: dict[str, Any], by_size: dict[str, Any] | None = None) -> str:
    """The report as a text table (like scikit-learn's classification_report)."""
    names = r["class_names"]
    lines = [f"{'':>16} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for n in names:
        c = r["classes"][n]
        lines.append(f"{n:>16} {c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:7.4f} {c['support']:8d}")
    lines.append(f"{'accuracy':>16} {'':9} {'':7} {r['accuracy']:7.4f} {r['n']:8d}")
    if r["balanced_accuracy_mask_nomask"] is not None:
        lines.append(f"balanced accuracy (with_mask/without_mask): {r['balanced_accuracy_mask_nomask']:.4f}")
    lines.append("confusion matrix (rows = true, columns = predicted): " + " ".join(names))
    for n, row in zip(names, r["confusion"]):
        lines.append(f"{n:>16} " + " ".join(f"{v:7d}" for v in row))
    if by_size:
        lines.append("by face size (shorter side of the box, px):")
        for k, v in by_size.items():
            recalls = ", ".join(f"{c} {x:.3f}" for c, x in v["recall"].items())
            ba = v["balanced_accuracy_mask_nomask"]
            lines.append(f"  {k:>6}: n={v['n']:5d} acc={v['accuracy']:.4f} bal_acc={'-' if ba is None else f'{ba:.4f}'} recall: {recalls}")
    return "\n".join(lines)


def confusion_png(r: dict[str, Any], path: str) -> None:
    """Draw the confusion matrix (counts and row-normalised shading) to a PNG with OpenCV."""
    names, cm = r["class_names"], np.array(r["confusion"], np.float64)
    n, cell, left, top = len(names), 110, 150, 60
    img = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    for i in range(n):
        for j in range(n):
            shade = int(255 - 200 * rows[i, j])
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (120, 120, 120), 1)
            colour = (255, 255, 255) if rows[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(img, f"{int(cm[i, j])}", (x + 10, y + 45), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2)
            cv2.putText(img, f"{rows[i, j]:.1%}", (x + 10, y + 80), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        cv2.putText(img, names[i][:14], (5, top + i * cell + 60), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.putText(img, names[i][:14], (left + i * cell + 5, top - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "true (rows) vs predicted (columns)", (5, img.shape[0] - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.imwrite(path, img)
