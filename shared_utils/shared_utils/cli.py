"""Command-line flags: generated from the config dataclasses, with argparse types that reject absurd numbers.

One helper serves the three training scripts, so a config field is a flag in every project the same way: a
field ``batch_tokens: int`` becomes ``--batch-tokens``, a ``bool`` becomes ``--x`` / ``--no-x``, a ``list[str]``
takes one or more values, and a ``float | None`` field also takes ``none``. A flag that is not given is absent
from the parsed namespace (``argparse.SUPPRESS``), so the caller can tell an explicit flag, ``none`` included,
from a preset's value. Numbers are checked where argparse reads them: ``--lr nan`` or ``--limit -1`` end with
argparse's own one-line error (exit status 2), never a traceback from deep inside the run.

``transformers.HfArgumentParser`` does the same from a dataclass, but it fills every flag with the field's
default, which would silently override the presets (``--preset``, ``--size``, ``--variant``) that sit between
the dataclass defaults and the command line.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``error: argument --lr: ...``, exit status 2)
    instead of the usage block, which for a generated flag set runs to twenty lines."""

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


def optional_float(text: str) -> float | None:
    """A ``float | None`` flag: a finite number, or ``none`` (e.g. ``--moe-capacity-factor none``: dropless)."""
    return None if text.lower() == "none" else finite_float(text)


_TYPES = {"int": int, "float": finite_float, "str": str, "float | None": optional_float}


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
            flag, kw = f"--{dest.replace('_', '-')}", dict(dest=dest, default=argparse.SUPPRESS)
            if f.type == "bool":
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif f.type == "list[str]":
                parser.add_argument(flag, nargs="+", **kw)
            elif f.type in _TYPES:
                parser.add_argument(flag, type=_TYPES[f.type], **kw)
            else:
                raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {f.type}")


def pick(args: dict, cls, prefix: str = "") -> dict:
    """The flags given for ``cls``'s fields (those added with the same ``prefix``), as keyword overrides."""
    lead = f"{prefix}_" if prefix else ""
    return {f.name: args[lead + f.name] for f in fields(cls) if lead + f.name in args}
