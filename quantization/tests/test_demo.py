from quantization.demo import SHOWN, main


def test_demo_runs_end_to_end_and_prints_its_table(tmp_path, capsys):
    main(["--epochs", "0.5", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    table = captured.out[captured.out.index("quantization demo"):].splitlines()
    rows = [line.split() for line in table[2:2 + len(SHOWN)]]
    assert [r[0] for r in rows] == list(SHOWN)
    accuracy = {r[0]: float(r[1].rstrip("%")) for r in rows}
    assert accuracy["fp32"] > 25.0  # better than guessing among 4 classes, after half an epoch
    assert all(abs(a - accuracy["fp32"]) <= 10.0 for a in accuracy.values()), accuracy  # quantization costs little
    ratios = {r[0]: float(r[2].rstrip("x")) for r in rows}
    assert ratios["fp32"] == 1.0 and all(0.1 < v < 0.35 for k, v in ratios.items() if k != "fp32"), ratios
    assert "Failed to load" not in captured.err  # bitsandbytes' optional-kernel warning is silenced
