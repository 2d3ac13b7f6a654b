"""Small readers for the files of labelled data sets (used by :mod:`maskwatch.datasets`): class-name files
(``classes.txt``, ``data.yaml``), text in unknown encodings, image sizes from file headers, EXIF box turning, and
a tally that counts problems and names where the first few were."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .images import exif_orientation, image_size

# ---------------------------------------------------------------- problems, counted and named
EXAMPLES = 3  # how many places a warning names


@dataclass
class Tally:
    """How often one kind of problem happened, where it first happened (a few places) and, optionally, of which
    kind (a class name ...)."""

    n: int = 0
    where: list[str] = field(default_factory=list)  # the first few distinct places
    kinds: Counter[str] = field(default_factory=Counter)
    more: bool = False  # places beyond those in ``where``

    def add(self, where: str, kind: str | None = None) -> None:
        self.n += 1
        if where not in self.where:
            if len(self.where) < EXAMPLES:
                self.where.append(where)
            else:
                self.more = True
        if kind is not None:
            self.kinds[kind] += 1

    def places(self) -> str:
        """'a.txt:4, b.txt:1, ...'"""
        return ", ".join(self.where) + (", ..." if self.more else "")

    def kinds_text(self, limit: int = 6) -> str:
        """'face_with_mask (20), hat (1)'"""
        top = self.kinds.most_common()
        text = ", ".join(f"{k} ({v})" for k, v in top[:limit])
        return text + (f" and {len(top) - limit} more" if len(top) > limit else "")

    def __bool__(self) -> bool:
        return self.n > 0


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (as posix text) when inside it, else the whole path."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- text
def read_text(path: Path, what: str) -> str:
    """A text file that must be UTF-8 (a byte-order mark is allowed): an :class:`InputError` naming the file
    otherwise (a class-name file read wrongly would mislabel every face)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}, maybe "
                         "Latin-1 or Windows-1252); save it as UTF-8") from None


def read_text_lenient(path: Path) -> tuple[str, bool]:
    """(text, whether it was UTF-8): bytes that are not UTF-8 become U+FFFD (for label files of numbers, where
    only a comment or a damaged line can hold such bytes; those lines then fail to parse and are counted)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), False


# ---------------------------------------------------------------- class names
NAME_FILES = ("classes.txt", "obj.names", "classes.names")  # one name per line: line 1 = class 0 (LabelImg, darknet)
YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")  # Ultralytics / Roboflow: names: ...


def names_from_lines(text: str) -> dict[int, str]:
    """classes.txt: one class name per line (``with mask`` is one name), stripped; blank lines skipped."""
    names = [line.strip() for line in text.splitlines()]
    return dict(enumerate(n for n in names if n))


def _strip_comment(line: str) -> str:
    """The line without a YAML comment (a ``#`` at the start or after a space, outside quotes)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        s = s[1:-1]
    return s.strip()


def _split_commas(s: str) -> list[str]:
    parts, quote, cur = [], "", ""
    for ch in s:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p for p in (x.strip() for x in parts) if p]


def _top_value(lines: list[str], key: str) -> tuple[str, int] | None:
    """(the text after ``key:``, its line index) of a top-level (not indented) key, or None."""
    for i, line in enumerate(lines):
        m = re.match(rf"^{key}\s*:(.*)$", line)
        if m:
            return _strip_comment(m.group(1)).strip(), i
    return None


def yaml_names(text: str) -> dict[int, str] | None:
    """The ``names:`` of an Ultralytics/Roboflow data.yaml, without a YAML library: an inline list
    (``names: [a, 'b c']``, over several lines too), an inline dict (``{0: a, 1: b}``), a block list (``- a``) or a
    block dict (``0: a``). None when there is no ``names:`` key; :class:`ValueError` when it cannot be read."""
    lines = text.splitlines()
    found = _top_value(lines, "names")
    if found is None:
        return None
    rest, i = found
    if rest[:1] in ("[", "{"):
        close = "]" if rest[0] == "[" else "}"
        j = i
        while close not in rest and j + 1 < len(lines):  # an inline list spread over lines
            j += 1
            rest += " " + _strip_comment(lines[j]).strip()
        if close not in rest:
            raise ValueError(f"names: {rest[:40]}... has no closing '{close}'")
        items = _split_commas(rest[1 : rest.rindex(close)])
        if close == "]":
            return dict(enumerate(_unquote(x) for x in items))
        out = {}
        for item in items:
            k, sep, v = item.partition(":")
            if not sep or not _unquote(k).isdigit():
                raise ValueError(f"names: '{item}' is not 'ID: NAME'")
            out[int(_unquote(k))] = _unquote(v)
        return out
    if rest:
        raise ValueError(f"names: '{rest[:40]}' is neither a list nor a mapping of class ids to names")
    listed: list[str] = []
    mapped: dict[int, str] = {}
    for line in lines[i + 1 :]:
        s = _strip_comment(line).strip()
        if not s:
            continue
        if not line[:1].isspace() and not s.startswith("-"):
            break  # the next top-level key
        if s.startswith("-"):
            listed.append(_unquote(s[1:]))
            continue
        m = re.match(r"^['\"]?(\d+)['\"]?\s*:(.*)$", s)
        if not m:
            break
        mapped[int(m.group(1))] = _unquote(m.group(2))
    if listed and mapped:
        raise ValueError("names: mixes '- NAME' and 'ID: NAME' lines")
    return mapped or dict(enumerate(listed))


def yaml_has_key(text: str, key: str) -> bool:
    return _top_value(text.splitlines(), key) is not None


def yaml_nc(text: str) -> int | None:
    found = _top_value(text.splitlines(), "nc")
    return int(found[0]) if found and found[0].isdigit() else None


# ---------------------------------------------------------------- image sizes
@dataclass
class ImageSize:
    """An image's size as maskwatch shows it (upright: the EXIF orientation applied) and as stored in the file."""

    width: int
    height: int
    orientation: int = 1  # EXIF orientation tag, 1 = none
    stored_width: int = 0
    stored_height: int = 0


_HEADER_FIRST = 1 << 16  # bytes of an image read for its size first ...
_HEADER_MAX = 1 << 20  # ... and at most, where the first read does not hold the size (or the EXIF tag)
_PNG = b"\x89PNG\r\n\x1a\n"


def header_size(path: Path) -> ImageSize | None:
    """The size of an image from its header (no decoding; any format :func:`maskwatch.images.image_size` reads:
    JPEG, PNG, BMP, WebP, TIFF, ...), with its EXIF orientation applied as :func:`maskwatch.images.load_image`
    applies it; None for other formats or an unreadable header. Reads 64 KiB, or up to 1 MiB where those do not hold
    the size or the EXIF orientation."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEADER_FIRST)
            if len(data) == _HEADER_FIRST:
                size = image_size(data)
                if not size[0] or not size[1] or not _orientation_read(data):
                    data += f.read(_HEADER_MAX - len(data))
    except OSError:
        return None
    sw, sh = image_size(data)
    if not sw or not sh or (data[:8] == _PNG and data[12:16] != b"IHDR"):
        return None
    if data[:4] == b"RIFF" and not _orientation_read(data):
        return None  # a WebP whose EXIF chunk may lie beyond 1 MiB: decoded, as before
    o = exif_orientation(data)
    w, h = (sh, sw) if o in (5, 6, 7, 8) else (sw, sh)
    return ImageSize(w, h, o, sw, sh)


def _orientation_read(data: bytes) -> bool:
    """Whether the first bytes of an image, ``data``, settle its EXIF orientation as
    :func:`maskwatch.images.exif_orientation` reads it from the whole file: the EXIF block is wholly in ``data``, or
    ``data`` reaches where there can be none (a JPEG's scan, a PNG's image data), or the format has none."""
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker, size = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
                return i + 2 + size <= len(data)
            if marker == 0xDA:
                return True
            i += 2 + size
        return i + 4 <= len(data)
    if data[:8] == _PNG:
        i = 8
        while i + 8 <= len(data):
            size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
            if kind == b"eXIf":
                return i + 8 + size <= len(data)
            if kind in (b"IDAT", b"IEND"):
                return True
            i += 12 + size
        return False
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        if data[12:16] == b"VP8X" and len(data) > 20 and not data[20] & 0x08:
            return True  # no EXIF flag
        i = 12
        while i + 8 <= len(data):
            kind, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
            if kind == b"EXIF":
                return i + 8 + size <= len(data)
            i += 8 + size + (size & 1)
        return i >= int.from_bytes(data[4:8], "little") + 8  # all chunks walked
    return True  # no EXIF orientation read (BMP, TIFF, GIF, ...)


def stored_to_upright(box: tuple[float, float, float, float], orientation: int, sw: float, sh: float
                      ) -> tuple[float, float, float, float]:
    """A box (x1, y1, x2, y2) on an image's stored pixels (``sw`` x ``sh``) -> the same box on the upright image
    that :func:`maskwatch.images.orient` makes for the EXIF ``orientation``."""
    def point(x: float, y: float) -> tuple[float, float]:
        return {
            2: (sw - x, y), 3: (sw - x, sh - y), 4: (x, sh - y), 5: (y, x),
            6: (sh - y, x), 7: (sh - y, sw - x), 8: (y, sw - x),
        }.get(orientation, (x, y))

    x1, y1, x2, y2 = box
    (ax, ay), (bx, by) = point(x1, y1), point(x2, y2)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
