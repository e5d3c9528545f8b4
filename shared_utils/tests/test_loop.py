from types import SimpleNamespace

import pytest
import torch

from shared_utils.batching import EpochBatches, micro_batches, token_batches
from shared_utils.checkpoint import Progress, load_resumable
from shared_utils.errors import UserError
from shared_utils.loop import TrainingRun

DATA = SimpleNamespace(src=[[1] * (i % 7 + 1) for i in range(40)], tgt=[[2] * (i % 5 + 2) for i in range(40)])


def test_each_rank_takes_its_own_batch_and_a_new_epoch_has_a_new_order():
    first, second = token_batches(DATA, 60, seed=3, epoch=0), token_batches(DATA, 60, seed=3, epoch=1)
    assert first != second
    progress = Progress()
    ranks = [EpochBatches(DATA, 60, seed=3, epoch=0, world=2) for _ in range(2)]
    taken = []
    for _ in range(len(first) // 2 + 1):
        before = (progress.epoch, progress.batch_pos)
        taken.append([ranks[r].take(Progress(epoch=before[0], batch_pos=before[1]), r) for r in range(2)])
        ranks[0].take(progress, 0)
    assert taken[0] == first[:2] and taken[1] == first[2:4]
    assert taken[-1] == second[:2] and (progress.epoch, progress.batch_pos) == (1, 2)


def test_too_few_batches_for_the_processes_is_one_sentence():
    with pytest.raises(UserError, match="makes only 1 batch\\(es\\) of --batch-tokens 10000, fewer than the 2 "):
        EpochBatches(DATA, 10000, seed=0, epoch=0, world=2)


def test_micro_batches_split_every_kth_row():
    assert micro_batches([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert micro_batches([7], 3) == [[7]]


def test_a_run_keeps_the_best_on_the_selection_metric_and_logs_each_step(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = TrainingRun(tmp_path, {"project": "test"}, optimizer=opt, resume=None, best_key="bleu", selecting=True,
                      total=4, eval_every=2, time_budget_min=0)
    due = []
    for score in (1.0, 3.0, 2.0, 5.0):
        run.begin_step(0.5)
        due.append(run.step_done(0.1, tokens=10))
        if due[-1]:
            run.checkpoint({"bleu": score}, model)
        assert not run.log({"step": run.progress.step})
    run.close()
    assert due == [False, True, False, True] and opt.param_groups[0]["lr"] == 0.5
    assert run.progress.best == {"bleu": 5.0, "step": 4} and run.tokens_seen == 40
    resumed = load_resumable(tmp_path)
    assert resumed.state["step"] == 4
    again = TrainingRun(tmp_path, {"project": "test"}, optimizer=opt, resume=resumed, best_key="bleu",
                        selecting=True, total=6, eval_every=2, time_budget_min=0)
    assert again.progress.step == 4 and again.progress.best["bleu"] == 5.0
    again.close()
    assert [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        f'{{"step": {s}}}' for s in (1, 2, 3, 4)]


def test_a_folder_another_process_trains_is_refused_until_it_ends(tmp_path):
    import subprocess
    import sys

    def run():
        model = torch.nn.Linear(2, 2)
        return TrainingRun(tmp_path, {"project": "test"}, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                           resume=None, best_key="acc", selecting=True, total=1, eval_every=1, time_budget_min=0)

    holder = subprocess.Popen(  # another process, mid-run in the same folder
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(tmp_path / ".lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=f"^{tmp_path} is being trained by another process: wait for it to end, "
                                            "or pass another --out folder$"):
            run()
        assert not (tmp_path / "config.json").exists()  # refused before writing anything
    finally:
        holder.communicate("")  # it ends, and its lock with it
    run()  # a run that stopped on an error, never closed: this process may retry in its own folder
    run().close()
    probe = subprocess.run([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
                            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(tmp_path / ".lock")])
    assert probe.returncode == 0  # released by close(): a later process may resume the run


def test_a_worse_selection_score_is_not_the_best(tmp_path):
    model = torch.nn.Linear(2, 2)
    run = TrainingRun(tmp_path, {"project": "test"}, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                      resume=None, best_key="acc", selecting=True, total=2, eval_every=1, time_budget_min=0)
    for score in (0.9, 0.4):
        run.begin_step(0.1)
        run.step_done(0.0)
        run.checkpoint({"acc": score}, model)
    run.close()
    assert run.progress.best == {"acc": 0.9, "step": 1}
    assert (tmp_path / "checkpoints" / "best").read_text().strip() == "step_00000001"


def test_checkpoint_averaging_is_the_mean_of_the_newest_weights(tmp_path):
    from shared_utils.checkpoint import load_average, load_best, load_resumable, save_average, save_progress

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = []
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(step))
            model.bias.fill_(10.0 * step)
        saved.append({k: v.clone() for k, v in model.state_dict().items()})
        save_progress(tmp_path, Progress(step=step), model=model, optimizer=opt, config={"project": "t"},
                      extra_files={"tokenizer.json": f"tok{step}"}, keep_last=3)
    fresh = torch.nn.Linear(3, 2)
    newest = load_average(tmp_path, 2, fresh)
    assert newest.path.name == "step_00000003"
    assert torch.equal(fresh.weight, torch.full((2, 3), 2.5)) and torch.equal(fresh.bias, torch.full((2,), 25.0))
    with pytest.raises(UserError, match="keeps 3 checkpoint\\(s\\), fewer than the 4 to average: train it with "
                                        "--keep-checkpoints 4 or more"):
        load_average(tmp_path, 4, fresh)
    folder = save_average(tmp_path, 3, torch.nn.Linear(3, 2))  # a checkpoint of its own, loadable by path
    assert folder == tmp_path / "average_last3"
    averaged = load_best(folder)
    again = torch.nn.Linear(3, 2)
    averaged.load_weights(again)
    assert torch.equal(again.weight, torch.full((2, 3), 2.0)) and torch.equal(again.bias, torch.full((2,), 20.0))
    assert averaged.state == {"averaged": ["step_00000001", "step_00000002", "step_00000003"]}
    assert (averaged.config, averaged.read_text("tokenizer.json")) == ({"project": "t"}, "tok3")
    assert load_resumable(tmp_path).path.name == "step_00000003"  # resuming never sees it
