"""Command-line flags: generated from the config dataclasses, with argparse types that reject absurd numbers.

One helper serves the three training scripts, so a config field is a flag in every project the same way: a
field ``batch_tokens: int`` becomes ``--batch-tokens``, a ``bool`` becomes ``--x`` / ``--no-x``, a ``list[str]``
takes one or more values, and a ``float | None`` field also takes ``none``. A flag that is not given is absent
from the parsed namespace (``argparse.SUPPRESS``), so the caller can tell an explicit flag, ``none`` included,
from a preset's value. Numbers are checked where argparse reads them: ``--lr nan`` or ``--limit -1`` end with
argparse's own one-line error (exit status 2), never a traceback from deep inside the run.

``transformers.HfArgumentParser`` does the same from a dataclass, but it fills every flag with the field's
default, which would silently override the presets (``--preset`` and the like) that sit between
the dataclass defaults and the command line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from .errors import UserError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written, and every flag's default in its help line (unless the flag is
    required, has no default, or its help already says what the default is)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``error: argument --lr: ...``, exit status 2)
    instead of the usage block, which for a generated flag set runs to twenty lines, and whose ``--help`` shows
    every flag's default (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def finite_float(text: str) -> float:
    """A float flag that is a real number: ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    return value


def nonnegative_int(text: str) -> int:
    """An int flag that is 0 or more (0 usually means 'all' or 'none')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """An int flag that is 1 or more."""
    value = nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def optional_int(text: str) -> int | None:
    """An ``int | None`` flag: an integer >= 0, or ``none`` (the default rule applies)."""
    return None if text.lower() == "none" else nonnegative_int(text)


def optional_float(text: str) -> float | None:
    """A ``float | None`` flag: a finite number, or ``none`` (e.g. ``--moe-capacity-factor none``: dropless)."""
    return None if text.lower() == "none" else finite_float(text)


# Path flags. One rule for every file and folder a flag names: ``~`` is expanded and the path made absolute and
# resolved (so one file named two ways, relative or absolute, from any folder, is one file), its kind is checked
# where the flag is read (a folder where a file is wanted, and the reverse, is one line), and nothing is created
# here: folders are made when something is first written into them, so a run that fails to start leaves none.


def user_path(text: str | Path) -> Path:
    """A path as the user meant it: ``~`` expanded, absolute, resolved."""
    return Path(os.path.expanduser(str(text))).resolve()


def input_file(text: str) -> Path:
    """A file to read: it must exist and be a file."""
    path = user_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def data_source(text: str) -> str:
    """A data flag: a hub id (``hf:name[:config[:split]]``, kept as given) or a local file (:func:`input_file`)."""
    return text if text.startswith("hf:") else str(input_file(text))


def _below_a_folder(path: Path, text: str) -> Path:
    """``path``, unless a file stands where one of its folders should be (its nearest existing ancestor)."""
    parent = next(p for p in path.parents if p.exists())
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    return path


def output_file(text: str) -> Path:
    """A file to write: not a folder, and no file stands where a folder of its path should be."""
    path = user_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: name a file to write")
    return _below_a_folder(path, text)


def output_dir(text: str) -> Path:
    """A folder to write into (made on first write): it must not be a file, nor lie under one."""
    path = user_path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return _below_a_folder(path, text)


def add_results_flags(parser: argparse.ArgumentParser, results: Path, study: str) -> None:
    """``--out`` and ``--publish`` for a benchmark: its files go to ``runs/<study>`` (or ``--out``) unless
    ``--publish`` says to write the published tables in ``results`` that the READMEs cite, so a trial run with
    ``--limit 10`` never replaces them. Read the folder back with :func:`results_folder`."""
    parser.add_argument("--out", type=output_dir, default=None,
                        help=f"folder for the results (default: runs/{study}; never the published tables)")
    parser.add_argument("--publish", action="store_true",
                        help=f"write the published tables the READMEs cite ({results.parent.name}/{results.name}/)")


def results_folder(args: argparse.Namespace, results: Path, study: str) -> Path:
    """Where :func:`add_results_flags`' benchmark writes: ``results`` with ``--publish``, else ``--out``, else
    ``runs/<study>`` under the working folder."""
    if args.publish and args.out is not None and args.out != results.resolve():
        raise UserError(f"--publish writes {results}: drop --out {args.out}, or --publish")
    if args.publish:
        return results
    return args.out if args.out is not None else user_path(Path("runs") / study)


def no_hub_dev_for_local_train(args: dict, none) -> bool:
    """A local ``--train`` without ``--dev``: the dev default, a hub dataset, is not fetched; ``args["dev"]``
    becomes ``none`` (no dev set: dev sets are only reported, never selected on, so the run loses nothing it
    decides by). Returns whether it did so, for the run's log."""
    if "train" in args and not str(args["train"]).startswith("hf:") and "dev" not in args:
        args["dev"] = none
        return True
    return False


NO_DEV_NOTE = "a local --train without --dev: no dev set is reported (the selection split still chooses checkpoints)"


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (from :func:`output_file`), making its folders first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


_TYPES = {"int": int, "float": finite_float, "str": str, "float | None": optional_float, "int | None": optional_int}
_PATH_TYPES = {"data": data_source}


def _help(f) -> str:
    """A generated flag's help: the field's ``help`` metadata, its choices and the dataclass's default (a preset
    flag's own help says which of these it replaces)."""
    parts = [f.metadata.get("help", "")]
    if "choices" in f.metadata:
        parts.append(f"choices: {', '.join(map(str, f.metadata['choices']))}")
    default = f.default if f.default is not MISSING else (
        f.default_factory() if f.default_factory is not MISSING else None)
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    parts.append(f"default: {'none' if default is None or default == '' else shown}")
    return "; ".join(p for p in parts if p).replace("%", "%%")


def add_dataclass_flags(parser: argparse.ArgumentParser, *classes, skip: tuple[str, ...] = (),
                        prefix: str = "") -> None:
    """Add one ``--flag`` per field of each dataclass; a flag not given is left out of the namespace.

    ``prefix`` names a nested config's flags: ``prefix="moe"`` turns ``MoEConfig.k`` into ``--moe-k``. Field
    annotations are strings (``from __future__ import annotations``); int/float/str, ``float | None``, ``bool``
    and ``list[str]`` fields are supported, and any other type is a programming error.
    """
    for cls in classes:
        for f in fields(cls):
            if f.name in skip:
                continue
            dest = f"{prefix}_{f.name}" if prefix else f.name
            flag = f"--{dest.replace('_', '-')}"
            kw = dict(dest=dest, default=argparse.SUPPRESS, help=_help(f))
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if "path" in f.metadata:
                kw["type"] = _PATH_TYPES[f.metadata["path"]]
            if f.type == "bool":
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif f.type == "list[str]":
                parser.add_argument(flag, nargs="+", **kw)
            elif f.type in _TYPES:
                parser.add_argument(flag, type=kw.pop("type", _TYPES[f.type]), **kw)
            else:
                raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {f.type}")


def pick(args: dict, cls, prefix: str = "") -> dict:
    """The flags given for ``cls``'s fields (those added with the same ``prefix``), as keyword overrides."""
    lead = f"{prefix}_" if prefix else ""
    return {f.name: args[lead + f.name] for f in fields(cls) if lead + f.name in args}
