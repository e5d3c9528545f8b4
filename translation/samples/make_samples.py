"""Writes train.fi-en.tsv and dev.fi-en.tsv: a synthetic Finnish->English task written for this repository
(numbers 2-99 spelled out inside short sentences). Deterministic; run it to regenerate the files."""

from __future__ import annotations

import random
from pathlib import Path

FI_ONES = ["", "yksi", "kaksi", "kolme", "neljä", "viisi", "kuusi", "seitsemän", "kahdeksan", "yhdeksän"]
EN_ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
EN_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
            "nineteen"]
EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
TEMPLATES = [("minulla on {n} kissaa", "i have {n} cats"), ("hän osti {n} kirjaa", "he bought {n} books"),
             ("pöydällä on {n} omenaa", "there are {n} apples on the table"),
             ("me näimme {n} lintua", "we saw {n} birds"), ("talossa on {n} huonetta", "the house has {n} rooms")]


def finnish(n: int) -> str:
    tens, ones = divmod(n, 10)
    if n < 10:
        return FI_ONES[n]
    if n == 10:
        return "kymmenen"
    if tens == 1:
        return FI_ONES[ones] + "toista"
    return FI_ONES[tens] + "kymmentä" + FI_ONES[ones]


def english(n: int) -> str:
    tens, ones = divmod(n, 10)
    if n < 10:
        return EN_ONES[n]
    if tens == 1:
        return EN_TEENS[ones]
    return EN_TENS[tens] + (f"-{EN_ONES[ones]}" if ones else "")


def main() -> None:
    pairs = [(fi.format(n=finnish(n)), en.format(n=english(n))) for n in range(2, 100) for fi, en in TEMPLATES]
    random.Random(0).shuffle(pairs)
    here = Path(__file__).parent
    for name, rows in (("train", pairs[:400]), ("dev", pairs[400:])):
        (here / f"{name}.fi-en.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
