from moe_summarization.demo import ROUTERS, main


def test_demo_routes_exactly_and_its_summarizers_learn(tmp_path, capsys):
    main(["--steps", "60", "--out", str(tmp_path / "demo")])  # ~15 s; at 6 steps every ROUGE-L is below 1
    out = capsys.readouterr().out
    lines = out[out.index("MoE demo 1/2"):out.index("MoE demo 2/2")].strip().splitlines()[2:]
    routers = {line[:27].strip(): line[27:].split() for line in lines}
    assert list(routers) == list(ROUTERS)
    assert all(float(r[0]) < 1e-5 for r in routers.values())  # the fast dispatch equals the loop reference
    load = {name: float(r[1]) for name, r in routers.items()}
    dropped = {name: float(r[2].rstrip("%")) for name, r in routers.items()}
    assert load["expert choice, cf 1.0"] == 1.0 and min(load.values()) >= 1.0  # experts choosing: equal loads
    assert dropped["top-2, dropless"] == 0.0 and dropped["top-1 (Switch), cf 1.25"] > 0.0  # capacity drops
    models = {line.split()[0]: [float(x) for x in line.split()[1:]]
              for line in out[out.index("MoE demo 2/2"):].splitlines()[2:]}
    assert list(models) == ["dense", "moe_top2", "moe_top1", "moe_hash", "lead-1"]
    assert all(m[1] > 10 for m in models.values()), models  # each model learned to write headline words
    assert all(m[0] >= m[1] for m in models.values())  # ROUGE-1 >= ROUGE-L, always
