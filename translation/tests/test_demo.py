from translation.demo import main


def test_demo_learns_the_toy_task_and_search_beats_sampling(tmp_path, capsys):
    main(["--steps", "150", "--out", str(tmp_path / "demo")])  # ~7 s; after 1 step every chrF++ is below 1
    out = capsys.readouterr().out
    table = out[out.index("translation demo"):].splitlines()
    rows = {line[:18].strip(): [float(x) for x in line[18:].split()] for line in table[2:]}
    assert list(rows) == ["greedy", "beam 4", "top-k 10, T 0.7", "top-p 0.9"]
    chrf = {name: r[1] for name, r in rows.items()}
    assert chrf["greedy"] > 45 and chrf["beam 4"] > 45, chrf  # the model learned the number sentences
    assert chrf["top-p 0.9"] < min(chrf["greedy"], chrf["beam 4"]), chrf  # sampling trades accuracy for variety
    assert all(r[2] > 0 for r in rows.values())
