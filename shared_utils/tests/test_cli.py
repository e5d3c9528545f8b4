from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared_utils.cli import Parser, add_dataclass_flags, pick


@dataclass
class Outer:
    steps: int = 10
    lr: float = 1e-3
    fused: bool = True
    dev: list[str] | None = None


@dataclass
class Inner:
    k: int = 2
    capacity_factor: float | None = 1.25


def parser() -> Parser:
    p = Parser()
    add_dataclass_flags(p, Outer, skip=("dev",))
    add_dataclass_flags(p, Inner, prefix="moe")
    return p


def test_only_given_flags_are_picked_and_nested_ones_by_prefix():
    args = vars(parser().parse_args(["--steps", "5", "--no-fused", "--moe-k", "1", "--moe-capacity-factor", "none"]))
    assert pick(args, Outer) == {"steps": 5, "fused": False}
    assert pick(args, Inner, "moe") == {"k": 1, "capacity_factor": None}  # "none" is a value, not "not given"
    assert pick(vars(parser().parse_args([])), Outer) == {} and pick(vars(parser().parse_args([])), Inner, "moe") == {}


@pytest.mark.parametrize(("argv", "message"), [
    (["--dev", "a"], "unrecognized arguments: --dev a"),
    (["--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
    (["--moe-capacity-factor", "inf"], "argument --moe-capacity-factor: must be a finite number, got 'inf'"),
])
def test_refused_flags_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {message} (see --help)\n"


def test_a_field_type_without_a_flag_is_a_programming_error():
    @dataclass
    class Odd:
        table: dict | None = None

    with pytest.raises(TypeError, match="Odd.table: no flag for type dict | None"):
        add_dataclass_flags(Parser(), Odd)
