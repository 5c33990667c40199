"""Checkpoints from the Hugging Face hub, offline first.

timm and `transformers` models keep their weights in hub repositories, cached by
`huggingface_hub` under `$HF_HUB_CACHE` (default `$HF_HOME/hub`, `~/.cache/huggingface/hub`):

    models--<org>--<name>/refs/main                   -> the commit hash of the cached `main`
    models--<org>--<name>/snapshots/<hash>/<file>     -> the files (links into blobs/)

`locate` finds a checkpoint's files there without any network access; only when some are
missing and the hub is not switched off (`HF_HUB_OFFLINE=1`) does `download` fetch them, through
`huggingface_hub` itself so that its cache stays consistent. A snapshot folder named after the
revision (`snapshots/main/`) is accepted without `refs/main`, so a user can place files by hand.

The environment is read at each call, not at import (huggingface_hub reads it once, when first
imported), and `huggingface_hub` is imported only to download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from extract.weights import WeightsMissingError, index_shards

__all__ = [
    "HubCheckpoint",
    "download",
    "fetch",
    "hub_cache_dir",
    "hub_offline",
    "in_folder",
    "locate",
    "missing_files",
    "missing_message",
    "repo_folder",
    "snapshot_dir",
    "snapshot_target",
    "split_revision",
]

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubCheckpoint:
    """The files of one checkpoint in a hub repository.

    `files` lists what must be present, each entry as alternatives in order of preference
    (`("model.safetensors", "pytorch_model.bin")`: either will do). `optional` files are fetched
    when the repository has them (processor configurations): one of them must be present, or
    each recorded absent from the repository (`_optional_unknown`). The checkpoint's path is its
    first file (the weights); the other files lie next to it (`transformers` loads its folder).
    """

    repo_id: str  # "org/name", optionally "org/name@revision"
    files: tuple[tuple[str, ...], ...]
    optional: tuple[str, ...] = ()

    @property
    def repo(self) -> str:
        """The repository id without a revision."""
        return split_revision(self.repo_id)[0]

    @property
    def revision(self) -> str:
        """The revision asked for (`main` unless the id carries `@revision`)."""
        return split_revision(self.repo_id)[1]


def split_revision(repo_id: str) -> tuple[str, str]:
    """`"org/name@rev"` -> `("org/name", "rev")`; the revision defaults to `main`."""
    repo, _, revision = repo_id.partition("@")
    return repo, revision or "main"


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses under the current environment: `$HF_HUB_CACHE`, else
    `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_offline() -> bool:
    """True when the hub is switched off (`HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    """`<cache>/models--<org>--<name>`, the cache folder of a model repository."""
    repo = split_revision(repo_id)[0]
    return Path(cache or hub_cache_dir()) / ("models--" + repo.replace("/", "--"))


def snapshot_dir(repo_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of the revision in `repo_id` (`main` by default): the one
    `refs/<revision>` names, else `snapshots/<revision>` itself (a commit hash, or a folder a
    user made by hand); None when neither exists."""
    folder = repo_folder(repo_id, cache)
    revision = split_revision(repo_id)[1]
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        if commit and (folder / "snapshots" / commit).is_dir():
            return folder / "snapshots" / commit
    direct = folder / "snapshots" / revision
    return direct if direct.is_dir() else None


def snapshot_target(repo_id: str, cache: Path | None = None) -> Path:
    """The folder the files of `repo_id` are looked for in: its snapshot (`snapshot_dir`: the
    commit `refs/<revision>` names, as an interrupted download leaves it too), else
    `snapshots/<revision>`, a folder a user may make by hand."""
    found = snapshot_dir(repo_id, cache)
    return found or repo_folder(repo_id, cache) / "snapshots" / split_revision(repo_id)[1]


def _present(snapshot: Path, name: str) -> bool:
    path = snapshot / name
    if not path.is_file():  # a link into blobs/ whose blob is missing counts as absent
        return False
    if name.endswith(".index.json"):  # sharded weights: every shard must be there too
        shards = index_shards(path)
        return shards is not None and all((snapshot / shard).is_file() for shard in shards)
    return True


def _chosen(folder: Path, group: tuple[str, ...]) -> str | None:
    """The file of `group` a library loads from `folder`: the first one there, in the group's
    order (the libraries' own); None when none is there, or that one is incomplete (an index
    whose shards are not all there: transformers loads the index and fails, even with a whole
    pytorch_model.bin beside it)."""
    for name in group:
        if (folder / name).is_file():
            return name if _present(folder, name) else None
    return None


def _optional_unknown(checkpoint: HubCheckpoint, folder: Path | None) -> bool:
    """Whether `folder` cannot tell if the repository has the checkpoint's optional files: none
    of them is there, and huggingface_hub has not recorded each as absent from the repository
    (`.no_exist/<commit>/<file>`, which it writes when a download finds no such file). Offline,
    a processor configuration left out of a copied cache would otherwise be taken for the
    model class's defaults (another mean and std) without a word."""
    if not checkpoint.optional:
        return False
    if folder is None:
        return True
    absent = folder.parent.parent / ".no_exist" / folder.name
    return not any(_present(folder, f) for f in checkpoint.optional) and not all(
        (absent / f).is_file() for f in checkpoint.optional
    )


def _missing(checkpoint: HubCheckpoint, folder: Path | None) -> list[tuple[str, ...]]:
    """The groups of files `folder` lacks: required ones, and the optional ones while it cannot
    tell whether the repository has them (`_optional_unknown`)."""
    groups = list(checkpoint.files)
    if folder is not None:
        groups = [group for group in groups if _chosen(folder, group) is None]
    return groups + ([checkpoint.optional] if _optional_unknown(checkpoint, folder) else [])


def missing_files(checkpoint: HubCheckpoint, cache: Path | None = None) -> list[tuple[str, ...]]:
    """The groups of files the cached snapshot of `checkpoint` lacks (all when it has none)."""
    return _missing(checkpoint, snapshot_dir(checkpoint.repo_id, cache))


def in_folder(checkpoint: HubCheckpoint, folder: Path) -> Path | None:
    """The checkpoint's first file in `folder` (a snapshot, or a folder a user made with the
    same files) when every required file is there; None otherwise."""
    if _missing(checkpoint, folder):
        return None
    return folder / _chosen(folder, checkpoint.files[0])


def locate(checkpoint: HubCheckpoint, cache: Path | None = None) -> Path | None:
    """The checkpoint's first file in the cache when every required file is there; None
    otherwise. Never touches the network."""
    snapshot = snapshot_dir(checkpoint.repo_id, cache)
    return None if snapshot is None else in_folder(checkpoint, snapshot)


def download(checkpoint: HubCheckpoint, cache: Path | None = None) -> Path:
    """Download the checkpoint's missing files into the cache with huggingface_hub and return
    its path. Raises OSError (network errors, files the repository lacks) on failure."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    cache = Path(cache or hub_cache_dir())

    def get(name: str) -> Path:
        path = hf_hub_download(
            checkpoint.repo,
            name,
            revision=checkpoint.revision,
            cache_dir=cache,
            library_name="video-transfer-lab",
        )
        if name.endswith(".index.json"):
            shards = index_shards(Path(path))
            if shards is None:
                raise OSError(f"{name} of {checkpoint.repo} is no index of weight shards")
            for shard in shards:
                get(shard)
        return Path(path)

    def first_available(names: Sequence[str]) -> None:
        for name in names:
            try:
                get(name)
                return
            except EntryNotFoundError:
                continue
        raise OSError(f"the repository has none of {', '.join(names)}")

    for group in _missing(checkpoint, snapshot_dir(checkpoint.repo_id, cache)):
        if group != checkpoint.optional:
            first_available(group)
    for name in checkpoint.optional:
        snapshot = snapshot_dir(checkpoint.repo_id, cache)
        if snapshot is None or not _present(snapshot, name):
            try:
                get(name)
            except EntryNotFoundError:
                pass  # optional: the repository does without it
    path = locate(checkpoint, cache)
    if path is None:
        raise OSError(f"{checkpoint.repo_id} is still incomplete in {cache} after downloading")
    return path


def missing_message(name: str, checkpoint: HubCheckpoint, cache: Path | None, why: str) -> str:
    """One line: which hub repository and files `name` needs, the folder to put them in, and the
    other ways out."""
    missing = missing_files(checkpoint, cache) or checkpoint.files
    files = " and ".join(" or ".join(group) for group in missing)
    folder = snapshot_target(checkpoint.repo_id, cache)
    return (
        f"weights for {name} not found: {files} of the Hugging Face hub repository "
        f"{checkpoint.repo_id} (https://huggingface.co/{checkpoint.repo}) not in the hub cache; "
        f"put the files in {shlex.quote(f'{folder}/')} (or run `hf download {checkpoint.repo}` "
        f"where there is network and set HF_HOME to that cache, or pass --weights {name}=PATH) "
        f"[{why}]"
    )


def fetch(
    checkpoint: HubCheckpoint, name: str, cache: Path | None = None, allow_download: bool = True
) -> Path:
    """The checkpoint's path: from the cache when it is complete there (no network), else
    downloaded when allowed and the hub is not switched off, else a one-line
    WeightsMissingError naming the repository, the files and the folder."""
    path = locate(checkpoint, cache)
    if path is not None:
        return path
    if not allow_download:
        why = "downloads disabled"
    elif hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif not _hub_resolves():
        why = f"no network: {HUB_HOST} does not resolve"
    else:
        try:
            with _quiet_hub():
                return download(checkpoint, cache)
        except Exception as error:  # requests/httpx errors, OSError, hub errors: all "no file"
            why = f"download failed: {type(error).__name__}: {error}".replace("\n", " ")
    raise WeightsMissingError(missing_message(name, checkpoint, cache, why))


HUB_HOST = "huggingface.co"


def _hub_resolves() -> bool:
    """Whether the hub's name resolves, or may be reached otherwise (an endpoint of its own, or
    a proxy, which resolves names itself): without it every request of huggingface_hub retries
    for about 20 s before failing (a machine with no network)."""
    reached_otherwise = ("HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(name) for name in reached_otherwise):
        return True
    try:
        socket.getaddrinfo(HUB_HOST, 443)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub logs a warning for each retried request; a failure is one line of
    ours (its reason included), so they are held back while it downloads."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)
