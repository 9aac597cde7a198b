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

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """A BYTES tensor [N] of encoded images -> the model's tensor [N, ...]."""
        if images.ndim != 1:
            raise InvalidInput(f"input {self.name!r} takes a list of images: shape [N], not {list(images.shape)}")
        if images.size == 0:
            raise InvalidInput(f"input {self.name!r} holds no image")
        if images.size > self.config.max_images:
            raise PayloadTooLarge(
                f"input {self.name!r} holds {images.size} images; this model takes at most {self.config.max_images}"
            )
        return np.stack([self._one(item, row) for row, item in enumerate(images)])

    def _one(self, data: object, row: int) -> np.ndarray:
        if not isinstance(data, bytes | bytearray | memoryview | str):
            raise InvalidInput(f"input {self.name!r} row {row}: expected the bytes of an image")
        raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        picture = self._decode(raw, row)
        if self.config.resize is not None:
            picture = resize_and_crop(picture, self.config.resize, self.size)
        elif picture.size != self.size:
            picture = picture.resize(self.size, Image.Resampling.BILINEAR)
        pixels = np.asarray(picture, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if np.issubdtype(self.dtype, np.floating):
            pixels = (pixels * self.config.scale - self._mean) / self._std
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=self.dtype)

    def _decode(self, raw: bytes, row: int) -> Image.Image:
        where = f"input {self.name!r} row {row}"
        try:
            picture = Image.open(io.BytesIO(raw), formats=FORMATS)
            # The header gives the size before any pixel is decoded: refuse bombs here.
            width, height = picture.size
            if width * height > self.config.max_pixels:
                raise InvalidInput(
                    f"{where}: the image is {width}x{height} pixels; the limit is {self.config.max_pixels}"
                )
            picture.load()
            oriented = ImageOps.exif_transpose(picture)  # phone photos: as taken, not as stored
            return to_8_bit(oriented).convert(self.config.mode)
        except InvalidInput:
            raise
        except Image.DecompressionBombError:
            # Pillow's own guard, for sizes far past ours: refused from the header too.
            raise InvalidInput(
                f"{where}: the image has more pixels than the limit of {self.config.max_pixels}"
            ) from None
        except UnidentifiedImageError:
            raise InvalidInput(f"{where} is not an image Ferry can read ({', '.join(FORMATS)})") from None
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
            raise InvalidInput(f"{where}: the image is damaged ({exc})") from None


def to_8_bit(picture: Image.Image) -> Image.Image:
    """16-bit and float images scaled to 0-255 first: Pillow's convert() would clip them
    (mid-grey in a 16-bit PNG would become white)."""
    if picture.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return picture
    values = np.asarray(picture, dtype=np.float64)
    top = 65535.0 if picture.mode.startswith("I") else 1.0
    scaled = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


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
