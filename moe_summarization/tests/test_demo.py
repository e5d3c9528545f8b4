from moe_summarization.demo import ROUTERS, main


def test_demo_runs_end_to_end_and_prints_its_tables(tmp_path, capsys):
    main(["--steps", "6", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    routers = out[out.index("MoE demo 1/2"):out.index("MoE demo 2/2")].strip().splitlines()[2:]
    assert len(routers) == len(ROUTERS) and all(float(line.split()[-3]) < 1e-5 for line in routers)
    models = out[out.index("MoE demo 2/2"):].splitlines()[2:]
    assert [line.split()[0] for line in models] == ["dense", "moe_top2", "moe_top1", "moe_hash", "lead-1"]
