"""No number without a file: every table in a README's results sections names the results JSON it comes from
(an HTML comment ``<!-- numbers from: path/to/file.json -->`` on the line above it), and every number in that
table is a value of that file, as printed (rounded to the digits shown; fractions may be shown x100 as
percentages, bytes as MB)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md"))]
MARKER = re.compile(r"<!-- numbers from: (\S+) -->")
NUMBER = re.compile(r"(?<![\w.`/-])[-+]?\d[\d,]*(?:\.\d+)?(?![\w.`/])")
SHOWN_AS = (1.0, 100.0, 1 / 2**20)  # as stored; a fraction as %; bytes as MB


def result_tables(readme: Path) -> list[tuple[int, str | None, list[str]]]:
    """(line number, cited JSON or None, table lines) of every table under a results heading."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    tables, chain, i, fenced = [], {}, 0, False
    while i < len(lines):
        line = lines[i]
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:  # the heading chain: a level replaces itself and those below
            level = len(line) - len(line.lstrip("#"))
            chain = {k: v for k, v in chain.items() if k < level} | {level: line.lower()}
        if line.startswith("|") and any("result" in h for h in chain.values()):
            start, cited = i, None
            back = i - 1
            while back >= 0 and not lines[back].strip():
                back -= 1
            marker = MARKER.search(lines[back]) if back >= 0 else None
            cited = marker.group(1) if marker else None
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            tables.append((start + 1, cited, block))
            continue
        i += 1
    return tables


def numbers_of(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers_of(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers_of(v)]
    return []


def matches(shown: str, values: list[float]) -> bool:
    text = shown.replace(",", "")
    digits = len(text.split(".")[1]) if "." in text else 0
    target, tolerance = float(text), 0.5 * 10 ** -digits + 1e-9
    return any(abs(v * scale - target) <= tolerance for v in values for scale in SHOWN_AS)


CASES = [(readme, line, cited, block) for readme in READMES for line, cited, block in result_tables(readme)]


@pytest.mark.parametrize(("readme", "line", "cited", "block"), CASES,
                         ids=[f"{c[0].relative_to(ROOT)}:{c[1]}" for c in CASES])
def test_every_results_table_cites_a_file_that_holds_each_of_its_numbers(readme, line, cited, block):
    where = f"{readme.relative_to(ROOT)}:{line}"
    assert cited, f"{where}: a results table without a '<!-- numbers from: ... -->' line above it"
    path = (ROOT / cited) if (ROOT / cited).exists() else readme.parent / cited
    assert path.is_file(), f"{where}: cites {cited}, which does not exist"
    values = numbers_of(json.loads(path.read_text(encoding="utf-8")))
    for row in block[1:]:  # the header row holds labels
        if set(row) <= set("|-: "):
            continue
        for number in NUMBER.findall(re.sub(r"`[^`]*`", "", row)):
            assert matches(number, values), f"{where}: {number} in '{row.strip()}' is not a value of {cited}"


def test_the_checker_finds_tables_and_rejects_a_number_with_no_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("## Results\n\n<!-- numbers from: r.json -->\n| a | b |\n| --- | ---: |\n| x | 90.45 |\n\n"
                      "| c |\n| --- |\n| 1 |\n", encoding="utf-8")
    (line, cited, block), (_, uncited, _) = result_tables(readme)
    assert (line, cited, uncited) == (4, "r.json", None) and len(block) == 3
    assert matches("90.45", [0.9045]) and matches("1,015", [1015.2]) and matches("86.6", [86.6 * 2**20])
    assert not matches("90.46", [0.9045]) and not matches("3", [2.4])


# Prose: a measured number in a README's text (a ratio like 1.17x, an interval's end, a signed difference, a
# value given to two decimals or more) is a value of a results JSON that the same paragraph names. Numbers in
# code (backticks, fenced blocks) and in tables (checked above) are left out; a setting written as text, not
# code, would trip it, so settings go in backticks.
_NUM, _START = r"\d[\d,]*\.\d+", r"(?<![\w.`/-])"
MEASURED = re.compile("|".join([
    _START + r"[-+−]" + _NUM + r"(?![\d.])",  # a signed difference
    _START + _NUM + r"(?=\s?(?:×|x\b|%))",  # a ratio or a percentage
    _START + r"\d[\d,]*\.\d{2,}(?![\w`/.])",  # two decimals or more
    r"(?<=\[)[-+−]?" + _NUM, r"[-+−]?" + _NUM + r"(?=\])",  # an interval's ends
]))
CITED = re.compile(r"(?<![\w/])((?:[\w-]+/)*results/[\w./-]+?\.json)")


def prose_paragraphs(readme: Path) -> list[tuple[int, str, str]]:
    """(first line number, text, lead-in) of every paragraph or list item outside code fences, tables and
    headings; a list item's lead-in is the paragraph that introduces its list ("What it says (file.json):"),
    whose files the item may cite."""
    out, block, start, fenced, lead, in_list = [], [], 0, False, "", False
    for number, line in enumerate([*readme.read_text(encoding="utf-8").splitlines(), ""], 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        prose = not fenced and line.strip() and not line.startswith(("|", "#", "<!--", "    "))
        item = prose and re.match(r"\s*(?:[-*]|\d+\.) ", line)
        if item and block:  # a new list item ends the paragraph or item before it
            out.append((start, " ".join(block), lead if in_list else ""))
            if not in_list:
                lead = " ".join(block)
            block = []
        if item:
            in_list = True
        if prose:
            start = number if not block else start
            block.append(line.strip())
        elif block:
            out.append((start, " ".join(block), lead if in_list else ""))
            block = []
        if not prose and not line.strip() and not fenced:  # a blank line ends a list
            in_list, lead = False, ""
    return out


def prose_problems(readme: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for line, text, lead in prose_paragraphs(readme):
        code_free = re.sub(r"`[^`]*`", "", text)
        numbers = MEASURED.findall(code_free)
        if not numbers:
            continue
        values = []
        for cited in set(CITED.findall(text + " " + lead)):
            path = root / cited if (root / cited).is_file() else readme.parent / cited
            if path.is_file():
                values += numbers_of(json.loads(path.read_text(encoding="utf-8")))
        for number in numbers:
            if not matches(number.replace("−", "-").lstrip("+"), values):
                problems.append(f"{readme.relative_to(root)}:{line}: {number} is in no results file the paragraph "
                                f"names ({', '.join(sorted(set(CITED.findall(text + ' ' + lead)))) or 'none'})")
    return problems


@pytest.mark.parametrize("readme", READMES, ids=[r.relative_to(ROOT).as_posix() for r in READMES])
def test_every_measured_number_in_prose_is_in_a_results_file_the_paragraph_names(readme):
    problems = prose_problems(readme)
    assert not problems, "\n".join(problems)


def test_the_prose_checker_finds_a_number_with_no_file(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text('{"ratio": 1.17, "ci": [1.15, 1.22], "diff": -0.14}')
    readme = tmp_path / "README.md"
    readme.write_text("Ours is 1.17x [1.15, 1.22] the peer (`results/r.json`), and −0.14 BLEU.\n\n"
                      "- an earlier run had 2.94x, `lr 0.1` and 3 seeds.\n", encoding="utf-8")
    problems = prose_problems(readme, tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == ["2.94 is in no results file the paragraph names (none)"]


# A block copied from a results file: a <details> block introduced by "copied from `results/x.md`" holds text of
# that file, word for word, so a rerun that writes new summaries cannot leave old ones in the README.
COPIED = re.compile(r"copied from `((?:[\w-]+/)*results/[\w./-]+?\.md)`[^\n]*\n+<details>\n<summary>[^\n]*</summary>\n"
                    r"(.*?)\n</details>", re.S)


def copy_problems(readme: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for cited, body in COPIED.findall(readme.read_text(encoding="utf-8")):
        path = root / cited if (root / cited).is_file() else readme.parent / cited
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        if body.strip() not in source:
            problems.append(f"{readme.relative_to(root)}: the block copied from {cited} is not in that file")
    return problems


def test_every_block_copied_from_a_results_file_is_in_that_file():
    blocks = [m for r in READMES for m in COPIED.findall(r.read_text(encoding="utf-8"))]
    assert blocks, "no copied block found: the pattern no longer matches the READMEs"
    assert not [p for r in READMES for p in copy_problems(r)]


def test_a_copied_block_that_drifted_is_found(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s.md").write_text("- model: the old summary\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("Examples (copied from `results/s.md`):\n\n<details>\n<summary>Show</summary>\n\n"
                      "- model: a new summary\n\n</details>\n", encoding="utf-8")
    assert copy_problems(readme, tmp_path) == ["README.md: the block copied from results/s.md is not in that file"]
