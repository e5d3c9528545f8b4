import os

import pytest
import torch

import shared_utils.checkpoint as ckpt
from shared_utils.checkpoint import atomic_write, load_checkpoint, load_latest, mark_best, save_checkpoint
from shared_utils.errors import UserError


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)
        self.head = torch.nn.Linear(4, 11, bias=False)
        self.head.weight = self.emb.weight


def save(run, tag, model, step):
    return save_checkpoint(run, tag, model=model, state={"step": step}, config={"d": 4},
                           extra_files={"tokenizer.json": "{}"})


def test_round_trip_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    save(tmp_path, "step_00000001", model, 1)
    found = load_latest(tmp_path)
    assert found is not None and found.state == {"step": 1} and found.config == {"d": 4}
    assert found.read_text("tokenizer.json") == "{}"
    fresh = Tied()
    found.load_weights(fresh)
    assert torch.equal(fresh.emb.weight, model.emb.weight)
    assert fresh.head.weight is fresh.emb.weight  # still tied after loading


def test_crash_between_write_and_rename_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = Tied()
    save(tmp_path, "step_00000001", model, 1)

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save(tmp_path, "step_00000002", model, 2)
    monkeypatch.undo()
    found = load_latest(tmp_path)
    assert found.state == {"step": 1} and found.path.name == "step_00000001"
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert sorted(leftovers) == ["latest", "step_00000001"]


def test_atomic_write_crash_leaves_old_content(tmp_path, monkeypatch):
    target = tmp_path / "latest"
    atomic_write(target, "old")
    monkeypatch.setattr(ckpt.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["latest"]


def test_pruning_keeps_latest_n_and_best(tmp_path):
    model = Tied()
    for step in range(1, 6):
        save(tmp_path, f"step_{step:08d}", model, step)
        if step == 2:
            mark_best(tmp_path, "step_00000002")
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["step_00000002", "step_00000004", "step_00000005"]
    assert load_latest(tmp_path, "best").state == {"step": 2}
    assert load_checkpoint(tmp_path).state == {"step": 5}  # a run folder means its latest


def test_fresh_run_and_bad_paths(tmp_path):
    assert load_latest(tmp_path) is None
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    with pytest.raises(UserError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "junk")


def test_metrics_log_drops_the_rows_a_resumed_run_replays(tmp_path):
    import json

    with ckpt.open_metrics(tmp_path, 0) as f:
        f.writelines(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4))
    # killed after step 4, resumed from the checkpoint of step 2: steps 3 and 4 will be logged again
    with ckpt.open_metrics(tmp_path, 2) as f:
        f.write(json.dumps({"step": 3, "loss": 0.5}) + "\n")
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["loss"] == 0.5
    ckpt.open_metrics(tmp_path, 0).close()  # a fresh run starts a fresh log
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_a_stored_result_is_read_back_under_its_key_only(tmp_path):
    done = tmp_path / "run" / "bench_entry.json"
    key = {"checkpoint": {"step": 400}, "eval_sets": {"dev": ("dev.jsonl", 12)}}  # a tuple, as JSON keeps a list
    assert ckpt.stored_result(done, key) is None
    ckpt.store_result(done, key, {"scores": [1.5, 2.0]})
    assert ckpt.stored_result(done, key) == {"scores": [1.5, 2.0]}
    other = {**key, "eval_sets": {"dev": ("dev.jsonl", 13)}}
    assert ckpt.stored_result(done, other) is None  # another scoring: score again
    with pytest.raises(UserError, match="^run made otherwise$"):
        ckpt.stored_result(done, other, stale="run made otherwise")
    assert list(done.parent.iterdir()) == [done]  # written atomically: no temp file left beside it
