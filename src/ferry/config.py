"""A model's ``config.yaml``: validated strictly so a typo is an error, not a silent default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry.errors import ConfigError, first_line
from ferry.signature import DATATYPES, TensorSpec

RuntimeName = Literal["onnx", "sklearn", "torch", "python"]


class TensorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: list[int]) -> list[int]:
        if any(d < -1 for d in value):
            raise ValueError("dimensions are sizes >= 0, or -1 for any size")
        return value

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.datatype, tuple(self.shape))


class ImageConfig(BaseModel):
    """How an encoded image (JPEG, PNG, WebP, ...) becomes the model's input tensor."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["RGB", "L"] = Field("RGB", description="Colour mode: RGB (3 channels) or L (grayscale, 1).")
    size: tuple[int, int] | None = Field(
        None, description="[width, height] the model takes; default: from the model's input shape."
    )
    resize: int | None = Field(
        None, ge=1, description="Resize the shorter side to this first (keeping the aspect), then center-crop to size."
    )
    scale: float = Field(1 / 255, description="Pixel values (0-255) are multiplied by this.")
    mean: list[float] | None = Field(None, description="Subtracted per channel, after scaling.")
    std: list[float] | None = Field(None, description="Divided per channel, after the mean.")
    layout: Literal["NCHW", "NHWC"] | None = Field(None, description="Default: from the model's input shape.")
    max_pixels: int = Field(40_000_000, ge=1, description="Larger images are refused (400) before they are decoded.")
    max_images: int = Field(64, ge=1, description="More images in one request are refused (413).")
    max_request_pixels: int = Field(
        64_000_000,
        ge=1,
        description="All the images of one request together (every image input) may have this many pixels; "
        "more are refused (413) before any is decoded. With several image inputs, the smallest applies.",
    )


class PreprocessStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(None, description="The model input it feeds; default: the model's only input.")
    image: ImageConfig


class PostprocessStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: str | None = Field(None, description="The model output holding class scores; default: its only one.")
    labels: list[str] | str = Field(description="Class names in index order, or a file of one name per line.")
    top_k: int = Field(5, ge=1, description="Add outputs `classes` and `scores`: the k best, best first.")
    softmax: bool = Field(False, description="Turn the output's logits into probabilities first.")


class PlaygroundInput(BaseModel):
    """How the web app's playground asks for one input; by default guessed from its
    datatype, shape and preprocess step."""

    model_config = ConfigDict(extra="forbid")

    widget: Literal["image", "canvas", "text", "form", "json"] | None = None
    size: tuple[int, int] | None = Field(None, description="canvas: [height, width] in pixels of the input")
    range: tuple[float, float] | None = Field(
        None, description="canvas: the values of background and of full ink (default 0-1, 0-255 for UINT8)"
    )
    features: list[str] | None = Field(None, description="form: one field name per column")


class PlaygroundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, PlaygroundInput] = Field(default_factory=dict)


class CacheConfig(BaseModel):
    """``cache:`` in config.yaml: keep answers to repeated requests (ferry.cache)."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(..., ge=1, description="Bytes of answers kept; least recently used out first.")
    ttl_s: float | None = Field(None, gt=0, description="Seconds an answer is kept; none: until evicted.")
    shared: bool = Field(False, description="Keep answers in Redis (FERRY_REDIS_URL), shared by every node.")


class ModelConfig(BaseModel):
    """Every key is optional; the defaults suit a small model on a small machine."""

    model_config = ConfigDict(extra="forbid")

    runtime: RuntimeName | None = Field(
        None, description="Which runtime loads the file; by default chosen from its extension."
    )
    description: str = ""
    max_batch_size: int = Field(32, ge=0, description="Most rows one model call takes; 0 turns batching off.")
    max_delay_ms: float = Field(
        0.0, ge=0, le=10_000, description="How long a partial batch may wait for more requests."
    )
    instances: int = Field(1, ge=1, le=64, description="Parallel copies of the model.")
    max_queue_size: int = Field(256, ge=1, description="Requests waiting beyond this are refused with 503.")
    timeout_ms: int = Field(
        30_000,
        ge=1,
        description="A request still pre-processing or queued after this long is dropped with 503.",
    )
    max_body_bytes: int | None = Field(
        None, ge=1, description="Larger request bodies to this model get 413; the server's limit still applies."
    )
    max_tensor_elements: int | None = Field(
        None, ge=1, description="Input tensors with more elements get 413; the server's limit still applies."
    )
    trusted: bool = Field(False, description="Allow pickle/joblib files and any type in a .skops file.")
    trusted_types: list[str] = Field(default_factory=list, description="Extra types a .skops file may contain.")
    inputs: list[TensorConfig] | None = None
    outputs: list[TensorConfig] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="Intra-op threads per instance; 0 = runtime default.")
    warmup: bool = True
    cache: CacheConfig | None = Field(None, description="Answer repeated requests from a cache; off by default.")
    deterministic: bool = Field(True, description="The same inputs always give the same answer; false: never cached.")
    preprocess: list[PreprocessStep] = Field(default_factory=list)
    postprocess: list[PostprocessStep] = Field(default_factory=list)
    playground: PlaygroundConfig = Field(default_factory=PlaygroundConfig)


# Keys that let a file run code as it loads: the operator's to set, never an upload's
# (ferry.trust).
TRUST_KEYS = ("trusted", "trusted_types")


def load_config(path: Path) -> ModelConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path.name}: cannot read it: {type(exc).__name__}: {first_line(exc)}") from None
    if raw is None:
        return ModelConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: must be a mapping of keys to values")
    config = parse_config(raw, path.name)
    for step in config.postprocess:
        if isinstance(step.labels, str):
            step.labels = read_labels(path.parent, step.labels)
    return config


MAX_LABELS_BYTES = 4 * 1024 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """``safe_load`` refusing anchors' aliases (``*name``): an uploaded config of a few
    hundred bytes of nested aliases expands to billions of nodes (the "billion laughs")
    when it is walked. No config needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def parse_uploaded_config(text: str) -> dict[str, object]:
    """config.yaml sent with a version upload, checked as ``ferry serve`` would read it, as
    the mapping to store. Class names must be a list: no file lies beside an upload
    (``ferry push --config`` puts a labels file's lines in the list)."""
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"config.yaml is not valid YAML: {first_line(exc)}") from None
    except RecursionError:
        raise ConfigError("config.yaml is nested too deeply") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("config.yaml must be a mapping of keys to values")
    try:  # stored as JSON: YAML's binary values, NaN and infinities have no place there
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(
            "config.yaml: only text, finite numbers, true/false, null, lists and mappings are allowed"
        ) from None
    widening = [key for key in TRUST_KEYS if key in raw]
    if widening:
        # Trust is the operator's decision (ferry.trust), never the uploader's own claim.
        raise ConfigError(
            f"config.yaml: {' and '.join(widening)} cannot be set by an upload: loading a pickle or an "
            "untrusted .skops type runs code on the server, so only its operator can allow it "
            "(ferry server --trust-model NAME or --trust-type TYPE)"
        )
    config = parse_config(raw, "config.yaml")
    if any(isinstance(step.labels, str) for step in config.postprocess):
        raise ConfigError(
            "config.yaml: postprocess labels must be a list of class names in an upload "
            "(ferry push --config reads a labels file beside it into the list)"
        )
    return raw


def read_labels(folder: Path, name: str) -> list[str]:
    """One class name per line (blank lines at the end ignored), from a file beside
    config.yaml; the name may not leave that folder."""
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise ConfigError(f"labels file {name!r} must be beside config.yaml")
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ConfigError(f"labels file {name!r} is over {MAX_LABELS_BYTES} bytes")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"labels file {name!r}: cannot read it: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ConfigError(f"labels file {name!r} is empty")
    return [line.strip() for line in lines]


def parse_config(raw: dict[str, object], where: str = "config") -> ModelConfig:
    try:
        config = ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_errors(exc)}") from None
    if config.cache is not None and not config.deterministic:
        raise ConfigError(f"{where}: cache: a model that is not deterministic would answer from the cache wrongly")
    return config


def describe_errors(exc: ValidationError) -> str:
    allowed = ", ".join(ModelConfig.model_fields)
    messages = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            hint = f" (allowed: {allowed})" if len(error["loc"]) == 1 else ""
            messages.append(f"unknown key {location!r}{hint}")
        else:
            messages.append(f"{location}: {error['msg']}")
    return "; ".join(messages)
