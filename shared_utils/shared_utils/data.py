"""What every project's reader is built from: a source is a path or ``hf:<name>[:<config>[:<split>]]``; lines
are read with their numbers (:func:`file_lines`); a :class:`Collector` routes each bad row to a
:class:`DataError` naming ``file:line`` and the reason, or, with ``skip_bad=True``, to a count per reason in
:attr:`Loaded.skipped`. Blank lines are never errors: they are skipped and counted as ``"empty line"``. Each
project reads its own record kind with these; the selection split carved from training data is here too.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from .errors import DataError, UserError
from .hub import load_hub_dataset

R = TypeVar("R")

HUB_PREFIX = "hf:"


@dataclass
class Loaded(Generic[R]):
    """The records read from one source, plus how many rows were skipped and why."""

    source: str
    records: list[R]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def require(self, flag: str) -> Loaded[R]:
        """Itself, or one sentence naming ``flag`` and the file when it holds no usable record.

        Training scripts call this for every input before the first step, so an empty ``--dev`` fails at
        start-up, not at the first validation an hour later."""
        if not self.records:
            why = f" (skipped: {self.summary().split('(skipped ', 1)[1]}" if self.skipped else ""
            raise UserError(f"{flag} {self.source} has no records{why}")
        return self

    def summary(self) -> str:
        """One line for logs, e.g. ``train.tsv: 59931 records (skipped 2: empty line x2)``."""
        text = f"{self.source}: {len(self.records)} records"
        if self.skipped:
            why = ", ".join(f"{reason} x{n}" for reason, n in sorted(self.skipped.items()))
            text += f" (skipped {sum(self.skipped.values())}: {why})"
        return text


SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_data(relative: str) -> str:
    """A file of the development data beside the checkout (``../shared/data/<relative>`` from the repository
    root), as an absolute path: a preset's local default then names the same file from any working folder."""
    return str(SHARED_DATA / relative)


def parse_hub_source(source: str) -> tuple[str, str | None, str]:
    """``hf:name[:config[:split]]`` -> ``(name, config, split)``; split defaults to ``train``."""
    parts = source[len(HUB_PREFIX):].split(":")
    if not parts[0] or len(parts) > 3:
        raise UserError(f"bad hub source '{source}': expected hf:<name>[:<config>[:<split>]]")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split


def decode_lines(raw: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for raw lines split on ``\\n`` only, 1-based; a CRLF line ending is dropped, a
    ``\\r`` or ``\\f`` inside a line is kept (so line N of the output is always line N of the input); bytes that
    are not UTF-8 raise :class:`DataError` naming ``name:line``."""
    for number, line in enumerate(raw, start=1):
        try:
            yield number, line.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            raise DataError(name, number, f"invalid UTF-8 at byte {exc.start}") from None


def file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a file with 1-based numbers; undecodable bytes raise with the line."""
    if not path.is_file():
        raise DataError(str(path), None, "file not found" if not path.exists() else "not a regular file")
    with path.open("rb") as f:
        yield from decode_lines(f, str(path))


def read_text_lines(path: Path | None, stream=None) -> list[str]:
    """Every line of ``path`` (or of the binary ``stream``, e.g. ``sys.stdin.buffer``, named ``<stdin>``)."""
    if path is not None:
        return [text for _, text in file_lines(Path(path))]
    return [text for _, text in decode_lines(stream, "<stdin>")]


class Collector(Generic[R]):
    """Accumulates records; routes each bad row to an exception or to the skip counter."""

    def __init__(self, source: str, skip_bad: bool):
        self.loaded: Loaded[R] = Loaded(source, [])
        self.skip_bad = skip_bad

    def bad(self, line: int | None, reason: str, *, kind: str) -> None:
        if not self.skip_bad:
            raise DataError(self.loaded.source, line, reason)
        self.loaded.skipped[kind] += 1

    def empty(self) -> None:
        self.loaded.skipped["empty line"] += 1


def check_text(col: Collector, line: int, name: str, value: object) -> str | None:
    if not isinstance(value, str):
        col.bad(line, f"field '{name}' must be a string, got {type(value).__name__}", kind=f"bad {name}")
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON can spell a lone surrogate ("\ud800"), which no tokenizer can encode
        col.bad(line, f"field '{name}' holds an invalid Unicode character", kind=f"bad {name}")
        return None
    value = value.strip()
    if not value:
        col.bad(line, f"empty field '{name}'", kind=f"empty {name}")
        return None
    return value


def hub_rows(source: str, local_hint: str) -> Iterable[dict]:
    name, config, split = parse_hub_source(source)
    return load_hub_dataset(name, config, split, local_hint=local_hint)


# ------------------------------------------------------------------------------------------------ helpers
def dedupe(records: Iterable[R], key: Callable[[R], Hashable] = lambda r: r) -> list[R]:
    """Keep the first occurrence of each key, in input order (deterministic)."""
    seen: set[Hashable] = set()
    out: list[R] = []
    for record in records:
        k = key(record)
        if k not in seen:
            seen.add(k)
            out.append(record)
    return out


SELECT_MAX, SELECT_SHARE = 1000, 10  # the default selection split: 1,000 records, or a tenth of smaller data


def default_selection_size(distinct: int) -> int:
    """The selection split's size when no flag sets it: :data:`SELECT_MAX` records, or a tenth of the distinct
    records where that is fewer (a small sample keeps nine tenths to train on)."""
    return min(SELECT_MAX, distinct // SELECT_SHARE)


def selection_size_field(unit: str):
    """A config's ``select_size`` field: ``None`` (the default) picks :func:`default_selection_size`."""
    from dataclasses import field

    return field(default=None, metadata={"help": (
        f"{unit} carved from --train, unseen in training, on which the best checkpoint is chosen; default: none, "
        f"that is {SELECT_MAX:,} or a tenth of the distinct {unit} where that is fewer; 0 = no split (the last "
        "checkpoint is kept)")})


def selection_note(selection: int, train: int, unit: str, size: int | None) -> str:
    """The line a training run prints about its selection split, saying how its size was chosen."""
    how = (f" (--select-size not given: {SELECT_MAX:,}, or a tenth of the distinct {unit} where that is fewer)"
           if size is None else "")
    return f"selection split: {selection} {unit} carved from --train (checkpoint choice){how}; {train} left to train on"


def selection_split(records: Sequence[R], size: int | None, *, seed: int = 0,
                    stratify: Callable[[R], Hashable] | None = None,
                    key: Callable[[R], Hashable] = lambda r: r) -> tuple[list[R], list[R]]:
    """Carve a selection split of ``size`` records out of training data: ``(train, selection)``; ``None``:
    :func:`default_selection_size`.

    Checkpoint choice and every design decision are made on this split, so the dev sets stay reported, never
    selected on. The split is deterministic from ``seed``; with ``stratify`` each stratum (e.g. the source
    corpus) gets its share of ``size`` (largest remainders first). Selection records are distinct by ``key``,
    and every training record with a selection key is removed from ``train``, so no selection item is also
    trained on. Both halves keep the input order.
    """
    distinct = dedupe(range(len(records)), key=lambda i: key(records[i]))  # first index of each key
    size = default_selection_size(len(distinct)) if size is None else size
    if size < 0:
        raise UserError(f"the selection split size must be >= 0, got {size}")
    if size == 0:
        return list(records), []
    if size >= len(distinct):
        raise UserError(f"a selection split of {size} needs more than the {len(distinct)} distinct training "
                        "records; lower --select-size (0 = none)")
    strata: dict[Hashable, list[int]] = {}
    for i in distinct:
        strata.setdefault(stratify(records[i]) if stratify else "", []).append(i)
    names = sorted(strata, key=str)
    quota = {n: size * len(strata[n]) / len(distinct) for n in names}
    share = {n: int(quota[n]) for n in names}
    for n in sorted(names, key=lambda n: (share[n] - quota[n], str(n)))[: size - sum(share.values())]:
        share[n] += 1
    rng = random.Random(seed)
    chosen = {i for n in names for i in rng.sample(strata[n], share[n])}
    held = {key(records[i]) for i in chosen}
    train = [r for r in records if key(r) not in held]
    selection = [records[i] for i in sorted(chosen)]
    return train, selection
