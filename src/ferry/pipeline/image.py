"""Encoded images in, the model's input tensor out: decode (Pillow), orient, convert the
colour mode, resize (and center-crop), scale, normalise, lay out NCHW or NHWC."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferry.config import ImageConfig
from ferry.errors import ConfigError, InvalidInput, PayloadTooLarge
from ferry.signature import TensorSpec

# What Pillow may open: the formats people send. Anything else (PSD, EPS via
# Ghostscript, ...) is refused rather than handed to a rarely used decoder.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
CHANNELS = {"RGB": 3, "L": 1}


class ImageInput:
    """Turns one model input into an image input: clients send a BYTES tensor [N] of
    encoded images; the model gets [N, C, H, W] (or [N, H, W, C]) in its dtype."""

    def __init__(self, spec: TensorSpec, config: ImageConfig) -> None:
        self.name = spec.name
        self.config = config
        self.dtype = spec.dtype
        shape = spec.shape
        if len(shape) != 4:
            raise ConfigError(
                f"image input {spec.name!r} must have 4 dimensions (N, C, H, W or N, H, W, C), not {shape}"
            )
        channels = CHANNELS[config.mode]
        self.layout = config.layout or ("NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW")
        c, h, w = (shape[1], shape[2], shape[3]) if self.layout == "NCHW" else (shape[3], shape[1], shape[2])
        if c not in (-1, channels):
            raise ConfigError(f"image input {spec.name!r} has {c} channels; mode {config.mode} gives {channels}")
        self.size: tuple[int, int]
        if config.size is not None:
            self.size = (config.size[0], config.size[1])
        elif h > 0 and w > 0:
            self.size = (w, h)
        else:
            raise ConfigError(f"image input {spec.name!r} has no fixed size in the model: set image.size")
        for field, values in (("mean", config.mean), ("std", config.std)):
            if values is not None and len(values) not in (1, channels):
                raise ConfigError(f"image.{field} needs 1 or {channels} values for mode {config.mode}")
        if config.std is not None and any(v == 0 for v in config.std):
            raise ConfigError("image.std values must not be 0")
        self._mean = np.asarray(config.mean or [0.0], dtype=np.float32)
        self._std = np.asarray(config.std or [1.0], dtype=np.float32)
        self.public = TensorSpec(spec.name, "BYTES", (-1,) if shape[0] == -1 else (shape[0],))

    def check(self, images: np.ndarray) -> None:
        """The tensor clients sent holds a list of at most ``max_images`` images."""
        if images.ndim != 1:
            raise InvalidInput(f"input {self.name!r} takes a list of images: shape [N], not {list(images.shape)}")
        if images.size == 0:
            raise InvalidInput(f"input {self.name!r} holds no image")
        if images.size > self.config.max_images:
            raise PayloadTooLarge(
                f"input {self.name!r} holds {images.size} images; this model takes at most {self.config.max_images}"
            )

    def pixels(self, data: object, row: int) -> int:
        """How many pixels the image in row ``row`` would decode to, read from its header
        alone (Pillow's open is lazy): what the request's pixel budget adds up."""
        picture = self._open(data, row)
        width, height = picture.size
        picture.close()
        return width * height

    def decode(self, data: object, row: int) -> np.ndarray:
        """One encoded image -> the model's array for it ([C, H, W] or [H, W, C])."""
        picture = self._decode(self._open(data, row), row)
        if self.config.resize is not None:
            picture = resize_and_crop(picture, self.config.resize, self.size)
        elif picture.size != self.size:
            picture = picture.resize(self.size, Image.Resampling.BILINEAR)
        if picture.mode != self.config.mode:
            picture = picture.convert(self.config.mode)
        pixels = np.asarray(picture, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if np.issubdtype(self.dtype, np.floating):
            pixels = (pixels * self.config.scale - self._mean) / self._std
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=self.dtype)

    def _open(self, data: object, row: int) -> Image.Image:
        """The image's header, checked against ``max_pixels``; no pixel decoded yet."""
        where = f"input {self.name!r} row {row}"
        if not isinstance(data, bytes | bytearray | memoryview | str):
            raise InvalidInput(f"{where}: expected the bytes of an image")
        raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        try:
            picture = Image.open(io.BytesIO(raw), formats=FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's own guard, for sizes far past ours (the warning too, where
            # warnings are errors): refused from the header.
            raise InvalidInput(
                f"{where}: the image has more pixels than the limit of {self.config.max_pixels}"
            ) from None
        except UnidentifiedImageError:
            raise InvalidInput(f"{where} is not an image Ferry can read ({', '.join(FORMATS)})") from None
        except (OSError, ValueError, SyntaxError) as exc:  # a damaged header
            raise InvalidInput(f"{where}: the image is damaged ({exc})") from None
        width, height = picture.size
        if width * height > self.config.max_pixels:
            raise InvalidInput(f"{where}: the image is {width}x{height} pixels; the limit is {self.config.max_pixels}")
        return picture

    def _decode(self, picture: Image.Image, row: int) -> Image.Image:
        """The opened image's pixels, oriented, 8 bits per channel, in the model's mode
        or grayscale: L is resized before it becomes RGB (the same pixels, a third of the
        work); any other mode (palette, alpha, CMYK) must be converted first."""
        try:
            picture.load()
            ImageOps.exif_transpose(picture, in_place=True)  # phone photos: as taken, not as stored
            picture = to_8_bit(picture)
            return picture if picture.mode == "L" else picture.convert(self.config.mode)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInput(
                f"input {self.name!r} row {row}: the image has more pixels than the limit of {self.config.max_pixels}"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
            raise InvalidInput(f"input {self.name!r} row {row}: the image is damaged ({exc})") from None


# Pixels converted at a time from 16 bits (or float) to 8: the float32 scratch stays
# ~1 MiB whatever the image's size.
BAND_PIXELS = 256 * 1024
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_8_bit(picture: Image.Image) -> Image.Image:
    """16-bit and float images scaled to 0-255 first: Pillow's convert() would clip them
    (mid-grey in a 16-bit PNG would become white). A band of rows at a time, in float32
    and in place: the only whole-image copy is the 8-bit result (a 6300x6300 16-bit PNG
    once took 900 MiB of float64 copies here)."""
    if picture.mode not in WIDE_MODES:
        return picture
    # Integers (16-bit, or 32-bit "I" meant as 16-bit) span 0-65535, floats 0-1. The
    # products of 0-65535 and 255/65535 in float32 round as they do in float64: no value
    # is within float32's error of a .5.
    factor = np.float32(255.0 if picture.mode == "F" else 255.0 / 65535.0)
    width, height = picture.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = np.array(picture.crop((0, top, width, bottom)), dtype=np.float32)  # a writable copy
        band *= factor
        np.clip(band, 0, 255, out=band)
        np.rint(band, out=band)
        out[top:bottom] = band
    return Image.fromarray(out)


def resize_and_crop(picture: Image.Image, side: int, size: tuple[int, int]) -> Image.Image:
    """Shorter side to ``side``, then the centre ``size``, in one resize of just the
    region that survives the crop: a 200000x1 image is never scaled up whole first."""
    width, height = picture.size
    ratio = side / min(width, height)
    w, h = size
    if w > width * ratio or h > height * ratio:  # smaller than the crop: stretch instead
        return picture.resize(size, Image.Resampling.BILINEAR)
    box_w, box_h = w / ratio, h / ratio
    left, top = (width - box_w) / 2, (height - box_h) / 2
    return picture.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h))
