from quantization.demo import METHODS, main


def test_demo_runs_end_to_end_and_prints_its_table(tmp_path, capsys):
    main(["--epochs", "0.5", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    table = captured.out[captured.out.index("quantization demo"):].splitlines()
    assert [line.split()[0] for line in table[2:2 + len(METHODS)]] == list(METHODS)
    assert "Failed to load" not in captured.err  # bitsandbytes' optional-kernel warning is silenced
