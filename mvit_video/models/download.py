"""Fetching published checkpoints into a cache folder: once, atomically, checked, with a progress bar.

The cache folder is ``$MVIT_VIDEO_HOME`` if set, else ``torch.hub.get_dir()/mvit_video``. A file already there is
used without touching the network, so offline machines work once the file has been placed at the path the error
message names. ``$MVIT_VIDEO_WEIGHTS_MIRROR`` (e.g. ``http://mirror.local:8000``) replaces the scheme and host of
every URL, keeping its path: for an internal mirror of the publishers' files, and for the tests' local server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from .weights import Weights, WeightsError

logger = logging.getLogger(__name__)

HOME_ENV = "MVIT_VIDEO_HOME"
MIRROR_ENV = "MVIT_VIDEO_WEIGHTS_MIRROR"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's convention: name-<sha256 prefix>.ext
_CHUNK = 1 << 20
_TIMEOUT_S = 30


def cache_dir() -> Path:
    """Where downloaded weights are kept (not created here)."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path(torch.hub.get_dir()) / "mvit_video"


def has_safetensors() -> bool:
    return importlib.util.find_spec("safetensors") is not None


def _candidates(entry: Weights) -> list[tuple[str, str]]:
    """(URL, cache file name) pairs to try in order: the entry's file, then its fallback copy (``pytorch_model.bin``
    beside ``model.safetensors``, as timm loads hub files); only the fallback without the ``safetensors`` package."""
    pairs = [(entry.url, entry.file_name)]
    if entry.fallback_url is not None:
        stem = entry.file_name.removesuffix(os.path.basename(entry.url))
        pairs.append((entry.fallback_url, stem + os.path.basename(entry.fallback_url)))
    if not has_safetensors():
        pairs = [(url, file) for url, file in pairs if not url.endswith(".safetensors")]
        if not pairs:
            raise WeightsError(f"{entry.name} is published as safetensors only ({entry.url}); pip install safetensors")
    return pairs


def mirrored(url: str, mirror: Optional[str] = None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (default ``$MVIT_VIDEO_WEIGHTS_MIRROR``), if any."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    if not mirror:
        return url
    path = urllib.parse.urlsplit(url).path
    return mirror.rstrip("/") + path


def expected_hash_prefix(url: str) -> Optional[str]:
    """The sha256 prefix a torch.hub-style file name carries (``mvit_v2_s-ae3be167.pth`` -> ``ae3be167``)."""
    match = _HASH_IN_NAME.search(os.path.basename(urllib.parse.urlsplit(url).path))
    return match.group(1) if match else None


def weights_path(entry: Weights) -> Path:
    """Where ``entry``'s file is (or will be) in the cache: the first candidate already there, else the first."""
    paths = [cache_dir() / file for _, file in _candidates(entry)]
    return next((path for path in paths if path.is_file()), paths[0])


def fetch_weights(entry: Weights, progress: bool = True, mirror: Optional[str] = None) -> Path:
    """The local path of a published checkpoint, downloading it first unless it is in the cache.

    Args:
        entry: a registry entry (``weights.get_weights(...)``).
        progress: show a tqdm progress bar while downloading.
        mirror: scheme and host to fetch from instead of the publisher's (default ``$MVIT_VIDEO_WEIGHTS_MIRROR``).

    Returns:
        The cached file.

    Raises:
        WeightsError: unreachable server (naming the URL and the path to place the file at), an HTTP error, or a
            file whose sha256 is not the published one (naming the file, expected and actual hash; nothing is kept).
    """
    cached = weights_path(entry)
    if cached.is_file():
        return cached
    *firsts, (last_url, last_file) = _candidates(entry)
    for url, file_name in firsts:
        try:
            return _fetch(entry, url, cache_dir() / file_name, mirrored(url, mirror), progress)
        except _NotFound as e:
            logger.info("%s; trying %s", e, last_url)
    try:
        return _fetch(entry, last_url, cache_dir() / last_file, mirrored(last_url, mirror), progress)
    except _NotFound as e:
        raise WeightsError(str(e)) from None


class _NotFound(Exception):
    """HTTP 404: the next candidate file may exist."""


def _fetch(entry: Weights, url: str, dest: Path, source: str, progress: bool) -> Path:
    """Downloads ``source`` into a temporary file beside ``dest``, checks it and renames it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(source, out, dest, progress)
        _check_hash(entry, url, dest, digest)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _download(url: str, out, dest: Path, progress: bool) -> str:
    """Streams ``url`` into ``out``; the hex sha256 of what was written."""
    digest = hashlib.sha256()
    offline = f"cannot download {url}"
    hint = f"if this machine is offline, download the file elsewhere and place it at {dest}"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress) as bar:  # fmt: skip
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        error = _NotFound if e.code == 404 else WeightsError
        raise error(f"{offline}: HTTP {e.code} {e.reason}; {hint}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(f"{offline} ({reason}); {hint}") from None
    return digest.hexdigest()


def _check_hash(entry: Weights, url: str, dest: Path, actual: str) -> None:
    """Refuses a download whose sha256 is not the published one (full hash, or the prefix in the file name)."""
    expected = entry.sha256
    if expected is None and entry.check_url_hash and url == entry.url:
        expected = expected_hash_prefix(url)
        if expected is None:
            raise WeightsError(f"{entry.name}: check_url_hash is set but {url} carries no -<sha256 prefix>. name")
    if expected is not None and not actual.startswith(expected.lower()):
        raise WeightsError(f"{dest.name}: sha256 mismatch, expected {expected}, got {actual} (downloaded file "
                           "removed; the download was corrupted or the published file changed)")  # fmt: skip


WEIGHTS_PREFIX = "weights:"


def is_published(path: str) -> bool:
    """Whether a checkpoint path names published weights (``weights:<model>`` or ``weights:<model>.<tag>``)."""
    return path.startswith(WEIGHTS_PREFIX)


def resolve_checkpoint(path: str) -> str:
    """A local checkpoint path: ``weights:<model>[.<tag>]`` is fetched into the cache first, anything else stays."""
    if not is_published(path):
        return path
    from .weights import get_weights

    return str(fetch_weights(get_weights(path[len(WEIGHTS_PREFIX) :])))
