"""Decoding one image file into a small uint8 array: the work a folder's worker processes do.

Only Pillow and NumPy here (no torch), so a worker process starts light. Each file is opened, its first
frame taken (animated GIF, multi-page TIFF), decoded at reduced size when it is a JPEG much larger than the
target (Pillow's draft mode), turned upright (EXIF orientation), converted to L or RGB (high bit depth
rescaled, transparency composited on white, CMYK and palettes converted), and fitted to the target side
(centre crop, bicubic). One image at a time, whatever the folder's size.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # 16-bit and 32-bit integer and float images
GRAY_MODES = {"1", "L", "LA", "La"} | HIGH_DEPTH_MODES
INTENSITY = ("dtype", "minmax", "percentile")


def header(path: str, max_pixels: Optional[int] = None) -> Dict[str, Any]:
    """The mode and frame count of a file, without decoding its pixels; {"error": reason} when it cannot be read."""
    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        return _header(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _header(path: str) -> Dict[str, Any]:
    try:
        with Image.open(path) as im:
            return {"mode": im.mode, "frames": int(getattr(im, "n_frames", 1)), "size": im.size}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return {"error": _reason(e)}
    except Image.DecompressionBombError as e:  # header reads can already refuse
        return {"bomb": str(e)}


def _reason(e: Exception) -> str:
    return str(e).split(" '")[0] if isinstance(e, UnidentifiedImageError) else str(e)


def _rescale(arr: np.ndarray, mode: str, intensity: str) -> Tuple[np.ndarray, str]:
    """A high-bit-depth plane as float in [0, 1], and how it was rescaled."""
    x = arr.astype(np.float64)
    if intensity == "dtype":
        if mode == "F":  # float images: taken to be in [0, 1] already
            lo, hi, what = 0.0, 1.0, "float in [0, 1]"
        elif mode.startswith("I;16"):
            lo, hi, what = 0.0, 65535.0, "16-bit range 0..65535"
        else:  # 32-bit integers: the non-negative range of the type
            lo, hi, what = 0.0, float(2**31 - 1), "32-bit range 0..2147483647"
    elif intensity == "minmax":
        lo, hi, what = float(x.min()), float(x.max()), "its own min..max"
    else:
        lo, hi = (float(v) for v in np.percentile(x, [0.5, 99.5]))
        what = "its own 0.5..99.5 percentiles"
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return np.zeros_like(x), what
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0), what


def _to_float_image(im: Image.Image, out_mode: str, intensity: str, info: Dict[str, Any]) -> Image.Image:
    """A decoded image as an 8-bit L or RGB image, or (high bit depth, rescaled) a float 'F' image in 0..255."""
    if im.mode in HIGH_DEPTH_MODES:
        plane, what = _rescale(np.asarray(im), im.mode, intensity)
        info["rescaled"] = f"{im.mode}, by {what}"
        return Image.fromarray((plane * 255.0).astype(np.float32), mode="F")
    if out_mode == "RGB" and im.mode in ("P", "PA", "LA", "La", "RGBA", "RGBa"):
        im = im.convert("RGBA")  # composite transparency on white rather than black
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert(out_mode)


def decode(path: str, size: int, out_mode: str, intensity: str = "dtype",
           max_pixels: Optional[int] = None) -> Dict[str, Any]:
    """One file -> {"array": uint8 (C, size, size), "info": {...}}, or {"error": reason} / {"bomb": message}."""
    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        return _decode(path, size, out_mode, intensity)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decode(path: str, size: int, out_mode: str, intensity: str) -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                info["mode"] = im.mode
                frames = int(getattr(im, "n_frames", 1))
                if frames > 1:
                    im.seek(0)
                    info["frames"] = frames
                if im.format == "JPEG" and min(im.size) > 4 * size:
                    # Decode at 1/2, 1/4 or 1/8 scale when the file is much larger than the target: the short side
                    # stays at least twice the target, so the bicubic fit below still has pixels to average.
                    scale = 2 * size / min(im.size)
                    im.draft("L" if out_mode == "L" else None, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
                    info["draft"] = im.size
                im.load()
                orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation
                if orientation not in (1, None):
                    im = ImageOps.exif_transpose(im)
                    info["oriented"] = int(orientation)
                img = _to_float_image(im, out_mode, intensity, info)
    except Image.DecompressionBombError as e:
        return {"bomb": str(e)}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return {"error": _reason(e)}
    fitted = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(fitted)
    if fitted.mode == "F":
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        arr = arr[None] if out_mode == "L" else np.repeat(arr[None], 3, axis=0)
    else:
        arr = arr.astype(np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return {"array": np.ascontiguousarray(arr), "info": info}


def decode_task(task: Tuple[int, str, int, str, str, Optional[int]]) -> Tuple[int, Dict[str, Any]]:
    """For a process pool: (index, path, size, mode, intensity, max_pixels) -> (index, decode(...))."""
    i, path, size, out_mode, intensity, max_pixels = task
    return i, decode(path, size, out_mode, intensity, max_pixels)
