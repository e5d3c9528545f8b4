"""Each project README's file table matches the tree: every module listed once, under one of three parts."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("model core", "pipeline", "studies")


@pytest.mark.parametrize("project", ["translation", "quantization", "moe_summarization"])
def test_the_file_table_lists_every_module_under_one_part(project):
    text = (ROOT / project / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| part | file | what it holds |"):].split("\n\n")[0].splitlines()[2:]
    listed = {}
    for row in table:
        part, files = [cell.strip() for cell in row.strip("|").split("|")][:2]
        assert part in PARTS, row
        for name in re.findall(r"`([a-z0-9_]+\.py)`", files):
            assert name not in listed, f"{name} listed twice"
            listed[name] = part
    modules = {p.name for p in (ROOT / project).glob("*.py")} - {"__init__.py"}
    assert set(listed) == modules
    order = [PARTS.index(p) for p in listed.values()]
    assert order == sorted(order)  # the core first, then the pipeline, then the studies


def test_no_project_module_shadows_an_installed_or_standard_module():
    """``python quantization/train.py`` puts ``quantization/`` first on ``sys.path``: a module there named like an
    installed package or a standard module is what every ``import`` of that name then finds (``kernels.py`` once
    hid the ``kernels`` package that transformers imports, and the README's first command crashed)."""
    import pkgutil
    import sys

    ours = [*ROOT.glob("*/*.py"), *ROOT.glob("*/tests/*.py")]  # several projects may hold a module of one name
    ours_dirs = {ROOT, *(p.parent.resolve() for p in ours)}  # (a test may have put any of them on sys.path)
    elsewhere = {m.name for m in pkgutil.iter_modules()
                 if Path(getattr(m.module_finder, "path", "")).resolve() not in ours_dirs}
    clashes = sorted(p.relative_to(ROOT).as_posix() for p in ours
                     if p.stem in elsewhere | set(sys.stdlib_module_names) and p.stem != "__init__")
    assert not clashes, f"named like an importable module: {clashes}"


def test_no_script_imports_a_script():
    """Library apart from scripts (CONVENTIONS 14): a module with a ``__main__`` block is an entry point, and what
    two entry points share lives in a library module, never in one of them. Imports inside functions count too.
    ``gpu_smoke.py`` is exempt: like the tests, it runs the command lines themselves."""
    import ast

    modules = {p: p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".") for p in ROOT.glob("*.py")}
    modules |= {p: p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".") for p in ROOT.glob("*/*.py")
                if p.parent.name != "shared_utils"}
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for path, name in modules.items()}
    scripts = {name for name, tree in trees.items() if any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)}
    found = []
    for name, tree in trees.items():
        if name not in scripts or name == "gpu_smoke":
            continue
        for node in ast.walk(tree):
            targets = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            targets += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets += [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{name} imports {t}" for t in targets if t in scripts and t != name]
    assert not found
    assert {"translation.train", "moe_summarization.bench_summarization", "quantization.bench"} <= scripts


@pytest.mark.parametrize("bench", ["quantization.bench", "translation.bench_training", "translation.bench_recipe",
                                   "translation.bench_decoding", "moe_summarization.bench_moe",
                                   "moe_summarization.bench_summarization"])
def test_no_benchmark_writes_the_published_tables_unless_asked(bench, capsys):
    """A trial run (``--limit 10``) once replaced quantization/results/bench.json: the published tables are written
    only with ``--publish``; by default a benchmark writes ``runs/<study>``."""
    import importlib

    with pytest.raises(SystemExit):
        importlib.import_module(bench).main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--publish write the published tables the READMEs cite" in text
    assert "(default: runs/" in text and "never the published tables" in text


@pytest.mark.parametrize("cli", ["translation.train", "translation.eval", "translation.translate", "quantization.train",
                                 "quantization.eval", "moe_summarization.train", "moe_summarization.eval"])
def test_every_flag_of_the_everyday_commands_says_what_it_does_and_its_default(cli, monkeypatch):
    """``--help`` of the commands a user types first: every flag has a description, and its default unless it is
    required or has none; a flag with fixed values lists them."""
    import argparse
    import importlib

    from shared_utils.cli import HelpFormatter, Parser

    seen = {}

    def capture(self, *args, **kwargs):
        seen["parser"] = self
        raise SystemExit(0)

    monkeypatch.setattr(Parser, "parse_args", capture)
    with pytest.raises(SystemExit):
        importlib.import_module(cli).main([])
    formatter = HelpFormatter("x")
    for action in seen["parser"]._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action)
        assert text and not text.startswith(" (default"), f"{action.option_strings[0]} has no help"
        assert action.required or action.default is None or "default" in text, f"{action.option_strings[0]}: {text}"
