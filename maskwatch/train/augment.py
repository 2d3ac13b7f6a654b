"""Training-time augmentation of context crops (RGB uint8), in OpenCV and numpy.

Geometric: rotation, zoom, shift, shear, horizontal flip (one affine warp). Photometric: brightness and
contrast, blur, downscale-then-upscale (real faces are often 10-30 px wide), JPEG noise, greyscale; for masked
faces optionally a new colour for the mask (``recolour_lower``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def center_view(ctx: np.ndarray, size: int) -> np.ndarray:
    """The un-augmented input: the central face square of a context crop, resized to size x size."""
    return _warp(ctx, size, 1.0, 0.0, 0.0, 0.0, 0.0, False)


def _warp(ctx: np.ndarray, size: int, zoom: float, angle: float, shear: float, dx: float, dy: float, flip: bool) -> np.ndarray:
    c = ctx.shape[0]
    from .cropset import CONTEXT

    s = (c / CONTEXT) / size / zoom  # context pixels per output pixel
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], np.float64)
    sh = np.array([[1.0, shear], [0.0, 1.0]])
    m = rot @ sh * s
    if flip:
        m = m @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    centre_out = np.array([size / 2 - 0.5, size / 2 - 0.5])
    centre_in = np.array([c / 2 - 0.5 + dx * c / CONTEXT, c / 2 - 0.5 + dy * c / CONTEXT])
    t = centre_in - m @ centre_out
    mat = np.hstack([m, t[:, None]]).astype(np.float32)
    if s > 1.5:  # warpAffine has no area filter: pre-shrink the context so the warp samples without aliasing
        f = 1.0 / s
        ctx = cv2.resize(ctx, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        mat = mat.copy()
        mat[:, :2] *= (ctx.shape[1] / c)
        mat[:, 2] = (mat[:, 2] + 0.5) * (ctx.shape[1] / c) - 0.5
    return cv2.warpAffine(ctx, mat, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def augment(ctx: np.ndarray, size: int, rng: np.random.Generator, erase: float = 0.0, recolour: float = 0.0) -> np.ndarray:
    """One random training view (size x size x 3 RGB uint8) of a context crop.

    ``erase``: probability of covering a random rectangle (4-20% of the view) with noise or a flat colour, so
    the model cannot lean on one part of the face (a hand, a scarf, a cut-off chin). ``recolour``: probability of
    ``recolour_lower`` (give it only for faces that wear a mask over nose and mouth)."""
    img = _warp(
        ctx, size,
        zoom=float(rng.uniform(0.85, 1.2)), angle=float(rng.uniform(-15, 15)), shear=float(rng.uniform(-0.1, 0.1)),
        dx=float(rng.uniform(-0.08, 0.08)), dy=float(rng.uniform(-0.08, 0.08)), flip=bool(rng.random() < 0.5),
    )
    if recolour and rng.random() < recolour:
        img = recolour_lower(img, rng)
    if rng.random() < 0.6:  # small, far faces: lose the detail, keep the size
        small = int(rng.integers(8, max(9, size)))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25:
        k = float(rng.uniform(0.4, 1.4))
        img = cv2.GaussianBlur(img, (0, 0), k)
    if rng.random() < 0.8:
        alpha, beta = float(rng.uniform(0.65, 1.35)), float(rng.uniform(-35, 35))
        img = cv2.convertScaleAbs(img, alpha=alpha, beta=beta)
    if rng.random() < 0.1:
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        decoded = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) if ok else None
        img = decoded if decoded is not None else img
    if erase and rng.random() < erase:
        img = _erase(img, rng)
    return img


def recolour_lower(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A masked face's mask in another colour: hue turned, saturation and brightness scaled (black, white, vivid)
    inside a soft ellipse where a mask lies in a centred face view of RGB uint8 (made for the default margin of
    0.2: the crop is 20 % wider than the face, so the face spans about 8-92 % of the view and its mask about
    46-88 % of the height and 20-80 % of the width; fully recoloured inside 49-85 % of the height, fading to
    nothing at the ellipse's edge). Real masks come in every colour and pattern; the scene sets hold mostly pale
    blue and white ones."""
    s = img.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    d = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.67) / 0.21) ** 2
    alpha = np.clip((1.0 - d) / 0.3, 0.0, 1.0)[..., None]  # 1 inside d <= 0.7, 0 outside the ellipse
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.3, 2.0) + rng.uniform(0, 60), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.2, 1.2), 0, 255)
    new = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.rint(img * (1 - alpha) + new * alpha).astype(np.uint8)


def _erase(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random erasing (Zhong et al. 2017): one rectangle of random area and aspect, noise or a flat colour."""
    s = img.shape[0]
    area = rng.uniform(0.04, 0.2) * s * s
    aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
    h = int(min(s, max(2, round(math.sqrt(area * aspect)))))
    w = int(min(s, max(2, round(math.sqrt(area / aspect)))))
    y, x = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
    img = img.copy()
    if rng.random() < 0.5:
        img[y:y + h, x:x + w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        img[y:y + h, x:x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img
