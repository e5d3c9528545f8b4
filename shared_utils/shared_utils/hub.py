"""The only place that talks to the Hugging Face hub.

Users with internet get the real hub code paths (`datasets.load_dataset`, `from_pretrained`); everyone else
gets one sentence that names the local alternative, raised as :class:`HubUnavailableError`.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import HubUnavailableError


def is_local(name_or_path: str | os.PathLike) -> bool:
    """True when ``name_or_path`` names something on disk rather than a hub repository id."""
    return Path(name_or_path).expanduser().exists()


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """True for something only a file path can be: a hub id is ``name`` or ``owner/name``, never more parts,
    never starting with ``/``, ``.`` or ``~``."""
    text = str(name_or_path)
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def offline_requested() -> bool:
    """True when the user asked the HF libraries to use their cache only (``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(v, "0") not in ("0", "") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connect to the hub endpoint, so an offline machine fails in seconds, not after retries."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _unreachable(what: str, local_hint: str) -> HubUnavailableError:
    return HubUnavailableError(
        f"the Hugging Face hub is not reachable, so {what} cannot be downloaded "
        f"(set HF_HUB_OFFLINE=1 to use a cached copy); {local_hint}"
    )


def load_hub_dataset(name: str, config: str | None, split: str, *, local_hint: str) -> Any:
    """``datasets.load_dataset(name, config, split=split)``, or a one-sentence error naming ``local_hint``."""
    if not offline_requested() and not hub_reachable():
        raise _unreachable(f"dataset '{name}'", local_hint)
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is in every requirements file
        raise HubUnavailableError(f"the 'datasets' package is not installed; {local_hint}") from exc
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # network errors, gated repos and missing configs all surface differently
        raise HubUnavailableError(
            f"could not load dataset '{name}' (config {config}, split {split}) from the Hugging Face hub "
            f"({type(exc).__name__}); {local_hint}"
        ) from exc


def from_pretrained(load: Callable[[str], Any], name_or_path: str, *, local_hint: str) -> Any:
    """Call ``load(name_or_path)`` (e.g. ``AutoModel.from_pretrained``) and explain hub failures in one sentence.

    A local folder that fails to load is reported as such: that is a broken folder, not a network problem.
    """
    local = is_local(name_or_path)
    if not local and looks_like_path(name_or_path):
        raise HubUnavailableError(f"the local model folder '{name_or_path}' does not exist")
    if not local and not offline_requested() and not hub_reachable():
        raise _unreachable(f"model '{name_or_path}'", local_hint)
    try:
        return load(str(name_or_path))
    except Exception as exc:
        if local:
            raise HubUnavailableError(
                f"could not load the local model folder '{name_or_path}': {type(exc).__name__}: {exc}"
            ) from exc
        raise HubUnavailableError(
            f"could not load '{name_or_path}' from the Hugging Face hub ({type(exc).__name__}: {exc}); {local_hint}"
        ) from exc
