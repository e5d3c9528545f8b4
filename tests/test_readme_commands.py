"""Every command in every README's ``bash`` blocks, run as a user types it: from another working folder, so a
script is named by its path (``python /clone/quantization/train.py``), in the README's order (a later command
reads what an earlier one wrote), at tiny settings.

What changes from the README, and only this: the development data (``../shared/data/...``) and the placeholder
files (``my.csv``, ``fi.txt``, ...) become each project's ``samples/`` (CI has no ``../shared``); tiny settings
are appended to the training and evaluation commands (argparse keeps the last value of a flag); a benchmark is
run with ``--help`` (it imports everything it runs, but takes hours); ``make`` targets run as ``make -n`` (a dry
run: the target exists and its commands expand; ``make demo`` is tested on its own). A command passes when it
succeeds, or, where it needs what no CI has (the hub, a GPU, a folder only the user has, as ``REFUSALS`` says),
when it stops with one ``error:`` line and exit status 2. No command may end in a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {
    "translation/train.fi-en.tsv": "translation/samples/train.fi-en.tsv",
    "translation/dev": "translation/samples/dev.fi-en.tsv",
    "agnews/train.csv": "quantization/samples/train.csv",
    "agnews/dev.csv": "quantization/samples/dev.csv",
    "summarization/train.jsonl": "moe_summarization/samples/train.jsonl",
    "summarization/dev.jsonl": "moe_summarization/samples/dev.jsonl",
    "xsum-style/train.jsonl": "moe_summarization/samples/train.jsonl",
    "xsum-style/dev.jsonl": "moe_summarization/samples/dev.jsonl",
    "xsum/test-sample.jsonl": "moe_summarization/samples/dev.jsonl",
}
PLACEHOLDERS = {
    "my.csv": "quantization/samples/train.csv", "my_train.csv": "quantization/samples/train.csv",
    "my_dev.csv": "quantization/samples/dev.csv", "my.fi-en.tsv": "translation/samples/train.fi-en.tsv",
    "my_finnish.txt": "FINNISH", "fi.txt": "FINNISH", "my_train.jsonl": "moe_summarization/samples/train.jsonl",
    "my_dev.jsonl": "moe_summarization/samples/dev.jsonl", "my_test.jsonl": "moe_summarization/samples/dev.jsonl",
}
TINY = {  # appended to a script's arguments
    "translation/train.py": "--preset tiny --steps 2 --eval-every 2 --dev-limit 4 --batch-tokens 400 "
                            "--vocab-size 300",
    "translation/eval.py": "--beam-size 2",
    "quantization/train.py": "--epochs 0.05 --max-len 32 --dev-limit 20",
    "quantization/eval.py": "--limit 20 --no-latency",
    "moe_summarization/train.py": "--preset tiny --steps 2 --eval-every 2 --dev-limit 4 --vocab-size 300",
    "moe_summarization/eval.py": "--limit 4 --bertscore-model minilm",
    "moe_summarization/baselines.py": "--limit 2 --bertscore-model minilm",
}
SAMPLE_DATA = {  # where a training command names no data, its preset's local default becomes the samples
    "quantization/train.py": "--train {root}/quantization/samples/train.csv --dev {root}/quantization/samples/dev.csv",
}
REFUSALS = {  # a command that may stop with one sentence here, and why
    "/path/to/": "a model folder only the user has",
    "baselines.py": "BART / T5 / Llama-3 need the hub and a GPU",
}


def commands(readme: Path) -> list[str]:
    """The commands of the README's ``bash`` blocks: continuation lines joined, comments dropped."""
    out, fenced, pending = [], False, ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = line.strip() == "```bash" and not fenced
            continue
        if not fenced:
            continue
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            out.append(" ".join((pending + line).split()))
        pending = ""
    return out


def as_tested(command: str, finnish: Path) -> tuple[list[str] | str, str]:
    """(what to run, how: "make-n", "help", "run" or "shell"), rewritten as the module's docstring says."""
    for shared, sample in SAMPLES.items():
        command = re.sub(r"\.\./shared/data/" + re.escape(shared) + r"[\w.-]*", str(ROOT / sample), command)
    for name, sample in PLACEHOLDERS.items():
        command = re.sub(r"(?<![\w/.-])" + re.escape(name) + r"(?![\w.-])",
                         str(finnish if sample == "FINNISH" else ROOT / sample), command)
    python = shlex.quote(sys.executable)
    command = re.sub(r"(?<![\w/.-])((?:translation|quantization|moe_summarization)/\w+\.py)",
                     lambda m: str(ROOT / m.group(1)), command)
    if command.startswith("make "):
        return ["make", "-n", "-C", str(ROOT), *shlex.split(command)[1:]], "make-n"
    script = next((s for s in TINY if str(ROOT / s) in command), None)
    if re.search(r"bench\w*\.py", command) or command.startswith("torchrun "):  # hours, or several processes
        path = re.search(r"\S+\.py", command).group(0)
        return [sys.executable, path, "--help"], "help"
    if script:
        command += " " + TINY[script]
        if script in SAMPLE_DATA and "--train" not in command:
            command += " " + SAMPLE_DATA[script].format(root=ROOT)
    command = command.replace(" ... ", " ").replace(" ...", "")
    return re.sub(r"(^|\| )python ", r"\1" + python + " ", command), "shell"


READMES = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md"))]


def run_readme(readme: Path, tmp_path: Path) -> list[str]:
    finnish = tmp_path / "finnish.txt"
    finnish.write_text("Hyvää huomenta.\nKissa istuu matolla.\n", encoding="utf-8")
    work = tmp_path / "elsewhere"  # not the clone: every script is named by its path
    work.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    failures = []
    for command in commands(readme):
        what, how = as_tested(command, finnish)
        proc = subprocess.run(what, shell=how == "shell", cwd=work, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600, executable="/bin/bash" if how == "shell" else None)
        output = proc.stdout + proc.stderr
        refusal = next((why for key, why in REFUSALS.items() if key in command), None)
        named = re.search(r"--checkpoint (\S+)", command)
        if named and not (work / named.group(1)).exists():
            refusal = "a run that an earlier command of this README did not make"
        error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        clean_refusal = proc.returncode == 2 and len(error_lines) == 1 and "Traceback" not in output
        if "Traceback" in output or not (proc.returncode == 0 or (refusal and clean_refusal)):
            tail = "\n    ".join(output.strip().splitlines()[-6:])
            failures.append(f"{readme.relative_to(ROOT)}: `{command}` -> exit {proc.returncode}\n    {tail}")
    return failures


class TestRootReadme:
    def test_every_command_works_as_written(self, tmp_path):
        assert not (failures := run_readme(ROOT / "README.md", tmp_path)), "\n".join(failures)


class TestTranslationReadme:
    def test_every_command_works_as_written(self, tmp_path):
        assert not (failures := run_readme(ROOT / "translation/README.md", tmp_path)), "\n".join(failures)


class TestQuantizationReadme:
    def test_every_command_works_as_written(self, tmp_path):
        assert not (failures := run_readme(ROOT / "quantization/README.md", tmp_path)), "\n".join(failures)


class TestMoEReadme:
    def test_every_command_works_as_written(self, tmp_path):
        assert not (failures := run_readme(ROOT / "moe_summarization/README.md", tmp_path)), "\n".join(failures)


def test_the_extraction_joins_continuations_and_maps_data_to_the_samples(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("```bash\npython translation/train.py --out runs/x \\\n    --train ../shared/data/translation/"
                      "train.fi-en.tsv   # comment\nmake quant-bench QUANT_DATA=local\n```\n```\nnot a command\n```\n",
                      encoding="utf-8")
    first, second = commands(readme)
    assert first == "python translation/train.py --out runs/x --train ../shared/data/translation/train.fi-en.tsv"
    run, how = as_tested(first, tmp_path / "f.txt")
    assert how == "shell" and str(ROOT / "translation/samples/train.fi-en.tsv") in run
    assert f"{ROOT}/translation/train.py" in run and run.endswith(TINY["translation/train.py"])
    assert as_tested(second, tmp_path)[0][:4] == ["make", "-n", "-C", str(ROOT)]
    assert READMES and all(commands(r) for r in READMES)
    pytest.importorskip("translation")
