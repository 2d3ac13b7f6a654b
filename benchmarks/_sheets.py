"""Contact sheets: the benchmarks that put boxes up to be judged by eye (detector_misses, false_boxes, red_audit):
one grid writer and one tile cutter."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def write_sheet(path: str, tiles: Sequence[np.ndarray], cols: int, fill: int = 0) -> int:
    """Write equal-sized BGR ``tiles`` to ``path`` as a grid ``cols`` wide, the last row padded with tiles of
    grey level ``fill``. Returns the number of cells."""
    cells = list(tiles) + [np.full_like(tiles[0], fill)] * (-len(tiles) % cols)
    cv2.imwrite(path, np.vstack([np.hstack(cells[r : r + cols]) for r in range(0, len(cells), cols)]))
    return len(cells)


def context_tile(img: np.ndarray, box: np.ndarray | Sequence[float], size: int, context: float, outline: tuple[int, int, int],
                 caption: str, text: tuple[int, int, int], below: bool = False, fill: int = 0) -> np.ndarray:
    """One sheet tile from BGR ``img``: the xyxy pixel ``box`` outlined in BGR ``outline``, with ``context`` times its
    longer side around it (cut at the image edge), scaled so its longer side is ``size`` px, on a ground of grey level
    ``fill``. ``caption`` in BGR ``text``: over the top-left corner, or ``below`` it on 20 extra rows."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    m = context * max(x2 - x1, y2 - y1)
    a, b, c, e = int(max(0, x1 - m)), int(max(0, y1 - m)), int(min(w, x2 + m)), int(min(h, y2 + m))
    crop = img[b:e, a:c].copy()
    cv2.rectangle(crop, (int(x1) - a, int(y1) - b), (int(x2) - a, int(y2) - b), outline, 1)
    s = size / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))))
    t = np.full((size + (20 if below else 0), size, 3), fill, np.uint8)
    t[: crop.shape[0], : crop.shape[1]] = crop
    cv2.putText(t, caption, (2, size + 15 if below else 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, text, 1, cv2.LINE_AA)
    return t
