from translation.demo import main


def test_demo_runs_end_to_end_and_prints_its_table(tmp_path, capsys):
    main(["--steps", "20", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    table = out[out.index("translation demo"):].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["greedy", "beam", "top-k", "top-p"]
