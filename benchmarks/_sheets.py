"""Contact sheets: the benchmarks that put boxes up to be judged by eye (detector_misses, false_boxes, red_audit)."""

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
