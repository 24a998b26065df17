"""The lesson pipeline as a library function: run_lesson's typed summary and files, and
LessonError naming the configuration field at fault."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from fakes import make_learner

from fastcore_ext import lesson
from fastcore_ext.data import demo_dataset, get_image_files
from fastcore_ext.export import read_export
from fastcore_ext.learner import Learner
from fastcore_ext.lesson import (
    LESSON_LR,
    BadImages,
    LessonConfig,
    LessonError,
    LessonSummary,
    find_lr,
    run_lesson,
)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """12 classes x 6 images of 32 px (5 train, 1 valid each)."""
    return demo_dataset(tmp_path_factory.mktemp("demo") / "d", n_per_class=6, size=32)


def small_config(path, out, **changes) -> LessonConfig:
    base = dict(arch="resnet18", size=32, bs=8, epochs=1, unfreeze_epochs=1, lr_find_iters=8,
                pretrained=False, workers=0)  # fmt: skip
    return LessonConfig(path=path, out=out, **{**base, **changes})


def test_run_lesson_returns_its_summary_and_writes_each_file_once(tmp_path, small_demo, capsys):
    out = tmp_path / "run"
    s = run_lesson(small_config(small_demo, out))
    printed = capsys.readouterr().out
    assert isinstance(s, LessonSummary) and s.out == out
    assert s.interrupted is False and s.saved is None and s.epochs_done == 2
    assert s.data.endswith("12 classes, 60 train / 12 valid images")
    assert s.to_json() == json.loads((out / "summary.json").read_text())
    # the notes' flow: stage 1 at 3e-3 (no lr_find before it), lr_find after unfreeze
    assert s.learning_rates["stage1"] == LESSON_LR == 3e-3
    lo, hi = s.learning_rates["stage2"]
    assert 0 < lo < hi == pytest.approx(3e-4)
    assert "Stage 1: fit_one_cycle(1, max_lr=3.0e-03) (the lesson's default)" in printed
    assert printed.count("lr_find (") == 1 and "Stage 2: unfreeze" in printed
    assert "Running lr_find: up to " in printed  # a log shows what the next minutes are for
    # every plot saved once under the name the pipeline gives it: the library's automatic
    # saving (which would add lr_find.png, losses.png, ...) is off during the stages
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "confusion_matrix.png",
        "losses_stage1.png",
        "losses_stage2.png",
        "lr_find_stage2.png",
        "schedule_stage1.png",
        "schedule_stage2.png",
        "top_losses.png",
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("stage1", 0), ("stage2", 0)]
    assert {"export.pkl", "metrics.csv", "metrics.jsonl"} <= set(s.files)


def test_find_lr_saves_one_plot(tmp_path, small_demo, capsys):
    result = find_lr(small_config(small_demo, tmp_path / "lr"))
    assert result.plot == tmp_path / "lr" / "plots" / "lr_find.png"
    assert result.plot.read_bytes()[:4] == b"\x89PNG"
    assert 0 < result.suggestions.valley < 10
    assert "lr_find (lr_find): valley" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes,field,words",
    [
        ({"path": "missing"}, "path", "expected an image folder"),
        ({"bs": 100}, "bs", "100 is larger than the training set (60 items)"),
        ({"arch": "resnet4"}, "arch", "expected a torchvision classification model name"),
        ({"label_re": "_\\d+.jpg$"}, "label_re", "expected a regular expression with a group"),
        ({"label_re": "(["}, "label_re", "expected a regular expression, got '(['"),
        ({"label_re": "/(nomatch)_"}, "label_re", "does not match file"),
        ({"out": "a_file"}, "out", "expected a folder"),
        ({"out": "a_file/sub"}, "out", "cannot create the folder"),
        ({"arch": "vit_b_16"}, "arch", "expected a CNN that create_cnn can cut at its pooling"),
    ],
)
def test_errors_name_the_field(tmp_path, small_demo, changes, field, words):
    (tmp_path / "a_file").write_text("")
    for name in ("path", "out"):  # names of files under tmp_path
        if name in changes:
            changes = {**changes, name: tmp_path / changes[name]}
    config = small_config(changes.pop("path", small_demo), changes.pop("out", tmp_path / "o"),
                          **changes)  # fmt: skip
    with pytest.raises(LessonError) as info:
        run_lesson(config)
    assert info.value.field == field and words in str(info.value)


def test_an_out_folder_that_cannot_be_written_is_refused_before_anything_goes(
    tmp_path, small_demo, monkeypatch
):
    """An unwritable --out (or its plots/) failed with a traceback after training began, and
    the earlier run's files were deleted first."""
    out = tmp_path / "o"
    (out / "plots").mkdir(parents=True)
    earlier = [out / "export.pkl", out / "summary.json", out / "plots" / "top_losses.png"]
    for f in earlier:
        f.write_text("the earlier run's")
    real = lesson.tempfile.mkstemp

    def mkstemp(prefix, dir):
        if Path(dir) == out / "plots":
            raise PermissionError(1, "Operation not permitted")
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(lesson.tempfile, "mkstemp", mkstemp)
    with pytest.raises(LessonError) as info:
        run_lesson(small_config(small_demo, out))
    assert info.value.field == "out"
    assert f"cannot write into the folder '{out / 'plots'}': Operation not permitted" in str(
        info.value
    )
    assert all(f.read_text() == "the earlier run's" for f in earlier)
    assert sorted(p.name for p in out.rglob("*")) == ["export.pkl", "plots", "summary.json",
                                                      "top_losses.png"]  # fmt: skip


def test_valid_pct_leaving_an_empty_set_names_valid_pct(tmp_path, small_demo):
    flat = tmp_path / "few" / "arrow"
    flat.mkdir(parents=True)
    for f in get_image_files(small_demo / "train" / "arrow")[:3]:
        shutil.copy(f, flat / f.name)
    config = small_config(tmp_path / "few", tmp_path / "o", valid_pct=0.2)
    with pytest.raises(LessonError) as info:
        run_lesson(config)
    # int(0.2 * 3) = 0 images would go to validation
    assert info.value.field == "valid_pct" and "empty validation set" in str(info.value)


@pytest.fixture
def with_bad_images(small_demo, tmp_path):
    """A copy of the small demo with a truncated JPEG in train/ and a text file named .jpg in
    valid/ (both replace an image, so every count stays as in small_demo)."""
    root = tmp_path / "bad"
    shutil.copytree(small_demo, root)
    truncated = sorted((root / "train" / "arrow").glob("*.jpg"))[0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    text = sorted((root / "valid" / "ring").glob("*.jpg"))[0]
    text.write_text("this is not an image\n")
    return root, [str(truncated.relative_to(root)), str(text.relative_to(root))]


@pytest.mark.filterwarnings("ignore:epoch \\d+. skipped")
def test_summary_counts_the_unreadable_images_training_skipped(tmp_path, with_bad_images):
    root, bad = with_bad_images
    # bs 6 divides the 60 training items: no partial batch is dropped, so the epoch meets all
    config = small_config(root, tmp_path / "o", bs=6, lr=1e-3, unfreeze_epochs=0)
    s = run_lesson(config)
    assert s.bad_images.skipped == 2 and s.bad_images.dropped == 0
    assert s.bad_images.skipped_files == sorted(bad) and s.bad_images.dropped_files == []
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["bad_images"] == {
        "skipped": 2, "dropped": 0, "skipped_files": sorted(bad), "dropped_files": [],
    }  # fmt: skip


def test_summary_counts_the_images_skip_bad_dropped(tmp_path, with_bad_images):
    root, bad = with_bad_images
    config = small_config(root, tmp_path / "o", bs=6, lr=1e-3, unfreeze_epochs=0, skip_bad=True)
    with pytest.warns(UserWarning, match="skip_bad: dropped 2 unreadable"):
        s = run_lesson(config)
    assert s.data.endswith("12 classes, 59 train / 11 valid images")
    assert s.bad_images.dropped == 2 and s.bad_images.dropped_files == sorted(bad)
    assert s.bad_images.skipped == 0 and s.bad_images.skipped_files == []
    assert s.to_json()["bad_images"]["dropped"] == 2


def test_bad_images_lists_at_most_twenty_names_and_counts_all(tmp_path):
    class Data:  # what BadImages.of reads from a bunch
        path = tmp_path
        bad_items = [tmp_path / f"train/{k:02d}.jpg" for k in range(25)]
        dropped_items = [tmp_path.parent / "elsewhere.jpg"]

    bad = BadImages.of(Data())
    assert bad.skipped == 25 and len(bad.skipped_files) == 20
    assert bad.skipped_files[0] == "train/00.jpg"
    assert bad.dropped == 1 and bad.dropped_files == [str(tmp_path.parent / "elsewhere.jpg")]
    assert bool(bad) and not BadImages()


def test_out_inside_the_data_set_is_refused(tmp_path, small_demo):
    """Plots and models written among the images became a class of the next run."""
    with pytest.raises(LessonError) as info:
        run_lesson(small_config(small_demo, small_demo / "run"))
    assert info.value.field == "out" and "outside the data set" in str(info.value)
    assert not (small_demo / "run").exists()


def _interrupt_at(monkeypatch, method: str, call: int) -> None:
    """Learner.`method` raises KeyboardInterrupt at its `call`-th call (counted from 1)."""
    real, calls = getattr(Learner, method), []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Learner, method, interrupted)


def test_an_interrupted_run_counts_its_epochs_and_saves(tmp_path, small_demo, monkeypatch, capsys):
    """A Ctrl-C in stage 1's second epoch: the summary counts the epoch done (it said 0),
    gives its error rate, and the model is saved; files of an earlier run into the same
    folder are moved into previous/ (a rerun deleted an interrupted run's model), the run
    before that one's files there replaced."""
    out = tmp_path / "run"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "losses_stage2.png").write_bytes(b"old")
    (out / "models").mkdir()
    (out / "models" / "interrupted.pth").write_bytes(b"old")
    (out / "previous").mkdir()
    (out / "previous" / "summary.json").write_bytes(b"older")
    (out / "previous" / "notes.txt").write_bytes(b"the user's")
    _interrupt_at(monkeypatch, "_do_epoch_validate", 2)  # in the second epoch
    s = run_lesson(small_config(small_demo, out, epochs=3, lr=1e-3))
    assert s.interrupted and s.epochs_done == 1 and s.final_error_rate is not None
    assert s.saved == out / "models" / "interrupted.pth" and s.saved.stat().st_size > 1000
    assert not (out / "plots" / "losses_stage2.png").exists()
    said = capsys.readouterr().out
    assert "Saving the model" in said
    assert (
        f"the earlier run's files (export, models, metrics, plots) moved to {out / 'previous'}/"
        in said
    )
    previous = sorted(str(p.relative_to(out / "previous")) for p in (out / "previous").rglob("*.*"))
    assert previous == ["models/interrupted.pth", "notes.txt", "plots/losses_stage2.png"]
    assert (out / "previous" / "models" / "interrupted.pth").read_bytes() == b"old"


def test_interrupted_reruns_never_replace_the_last_finished_run(
    tmp_path, small_demo, monkeypatch, capsys
):
    """A finished run, then two reruns interrupted: the second moved the first into
    previous/, replacing the finished run's export there (its model lost without a word).
    An unfinished run's files now go to interrupted/ beside a finished one in previous/; a
    SIGKILL's temporary file in models/ is removed."""
    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    (out / "export.pkl").write_bytes(b"finished")
    (out / "summary.json").write_text(json.dumps({"interrupted": False}))
    dead = out / "models" / ".interrupted.pth.999999999.abc.tmp"  # no such process
    dead.write_bytes(b"half")
    for rerun in range(3):
        with monkeypatch.context() as m:
            _interrupt_at(m, "_do_epoch_validate", 1)
            s = run_lesson(small_config(small_demo, out))
        assert s.interrupted
        said = capsys.readouterr().out
        finished = json.loads((out / "previous" / "summary.json").read_text())
        assert finished == {"interrupted": False}  # kept through every rerun
        assert (out / "previous" / "export.pkl").read_bytes() == b"finished"
        if rerun:
            assert f"moved to {out / 'interrupted'}/ (previous/ keeps the last run" in said
            assert json.loads((out / "interrupted" / "summary.json").read_text())["interrupted"]
    assert not dead.exists()


def test_a_configuration_error_leaves_an_earlier_run_in_place(tmp_path, small_demo):
    """--precision fp16 on the CPU is found when the learner is built: the earlier run's
    files were moved into previous/ first, so a typo left no export.pkl to predict with."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "export.pkl").write_bytes(b"the earlier run's")
    with pytest.raises(LessonError, match="fp16") as e:
        run_lesson(small_config(small_demo, out, precision="fp16"))
    assert e.value.field == "precision"
    assert (out / "export.pkl").read_bytes() == b"the earlier run's"
    assert not (out / "previous").exists()


def test_a_ctrl_c_in_lr_find_keeps_stage_1s_error_rate(tmp_path, small_demo, monkeypatch):
    """A Ctrl-C in stage 2's lr_find after its first sweep epoch (a sweep epoch has no
    validation: its row is None) left the summary's error rate None after 3 epochs done."""
    # stage 1's epoch, then lr_find's first sweep epoch, then its second
    _interrupt_at(monkeypatch, "_do_epoch_train", 3)
    s = run_lesson(small_config(small_demo, tmp_path / "run", lr=1e-3, lr_find_iters=20))
    assert s.interrupted and s.epochs_done == 1
    assert s.final_error_rate is not None and s.final_valid_loss is not None


def test_a_run_that_fails_leaves_no_earlier_export_behind(tmp_path, small_demo, monkeypatch):
    """A run that dies before its export (here in validation) must not leave the previous
    run's export.pkl in --out, where `fastcore-ext predict` would use it without a word; nor
    an export.pth (this library's name before 2026-12-06, which predict's error names)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("export.pkl", "export.pth"):
        (out / name).write_bytes(b"an earlier run's model")

    def broken(self):
        raise RuntimeError("something went wrong")

    monkeypatch.setattr(Learner, "_do_epoch_validate", broken)
    with pytest.raises(RuntimeError, match="something went wrong"):
        run_lesson(small_config(small_demo, out, epochs=1, lr=1e-3))
    assert not (out / "export.pkl").exists() and not (out / "export.pth").exists()


def test_a_second_ctrl_c_waits_for_the_save():
    before = signal.getsignal(signal.SIGINT)
    with lesson.signal_handled(signal.SIGINT, signal.SIG_IGN):  # what run_lesson saves under
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before


def test_the_summary_says_which_epochs_ran_in_float32():
    """A one-epoch run from scratch under 'auto' ran in fp32 only: its summary said bf16."""
    learn = make_learner().to_bf16(fp32_epochs=1)
    learn.fit(1, 1e-3)
    assert lesson._precision_run(learn) == "fp32"
    learn.fit(1, 1e-3)
    assert lesson._precision_run(learn) == "bf16 (first 1 epoch fp32)"
    assert lesson._precision_run(make_learner()) == "fp32"


def test_a_ctrl_c_or_sigterm_during_the_final_export_does_not_lose_the_run(
    tmp_path, small_demo, monkeypatch
):
    """The trained model's export waits for a Ctrl-C or SIGTERM that comes while it is
    written (it raised there, leaving neither export.pkl nor models/interrupted.pth)."""
    import os

    real_export, sent = Learner.export, []

    def export(self, *args, **kwargs):
        for signum in (signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), signum)  # as if the user pressed Ctrl-C right now
            sent.append(signum)
        return real_export(self, *args, **kwargs)

    def terminate(signum, frame):  # the CLI's: SIGTERM taken as a Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Learner, "export", export)
    out = tmp_path / "o"
    with lesson.signal_handled(signal.SIGTERM, terminate):
        s = run_lesson(small_config(small_demo, out, unfreeze_epochs=0))
    assert len(sent) == 2 and s.interrupted is False
    assert (out / "export.pkl").is_file() and (out / "summary.json").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def _epoch_rows(out: Path) -> list[list[str]]:
    """metrics.csv's epoch, valid_loss and error_rate columns (the time differs run to run;
    train_loss is smoothed over the fit's batches, and a resumed fit's smoothing starts anew,
    as fastai's fit with start_epoch)."""
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
    assert rows[0] == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    return [[row[0], *row[2:4]] for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_demo):
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, run_lesson(small_config(small_demo, out, epochs=2, unfreeze_epochs=2, lr=1e-3))


@pytest.mark.parametrize(
    "method, call, point",
    [
        ("_do_epoch_validate", 2, "the end of stage 1's epoch 0 (of 0..1)"),  # in stage 1
        ("_do_epoch_train", 4, "the end of stage 1's epoch 1 (of 0..1)"),  # stage 2's lr_find
        ("_do_epoch_validate", 5, "the end of stage 2's epoch 0 (of 0..1)"),  # lr_find: call 3
        # while epoch 1's state was copied: that epoch logged, not kept; the resumed run's
        # log had it twice (a trial's Ctrl-C just after the epoch's row)
        ("checkpoint", 2, "the end of stage 1's epoch 0 (of 0..1)"),
    ],
)
def test_a_resumed_run_ends_as_a_run_never_interrupted(
    tmp_path, small_demo, uninterrupted, monkeypatch, capsys, method, call, point
):
    """A Ctrl-C writes models/resume.pth (the end of the last epoch completed); resume=True
    with the same configuration goes on from there and ends with the same epoch table, error
    rate and weights as the run never interrupted (precision 'auto': an fp32 epoch, then
    bf16 here)."""
    whole_out, whole = uninterrupted
    out = tmp_path / "run"
    config = small_config(small_demo, out, epochs=2, unfreeze_epochs=2, lr=1e-3)
    with monkeypatch.context() as m:
        _interrupt_at(m, method, call)
        s = run_lesson(config)
    assert s.interrupted and s.resume_point == point and (out / lesson.RESUME).is_file()
    capsys.readouterr()
    r = run_lesson(small_config(small_demo, out, epochs=2, unfreeze_epochs=2, lr=1e-3,
                                resume=True, workers=1))  # fmt: skip
    printed = capsys.readouterr().out
    assert f"Resuming from {point}" in printed and "moved to" not in printed
    logged_after = "logged 1 epoch row(s) after that point" in printed  # said why it goes back
    assert logged_after == (method == "checkpoint")
    assert r.resumed_from == point and not r.interrupted and r.resume_point is None
    assert not (out / lesson.RESUME).exists()  # finished: nothing left to resume
    assert not (out / "models" / "interrupted.pth").exists()  # nor the interruption's model
    assert r.final_error_rate == whole.final_error_rate
    assert r.learning_rates == whole.learning_rates and r.epochs_done == 4
    assert _epoch_rows(out) == _epoch_rows(whole_out)
    ours, theirs = (read_export(o / "export.pkl")[1] for o in (out, whole_out))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_resume_refuses_what_it_cannot_go_on_with(tmp_path, small_demo, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(LessonError, match="nothing to resume in .* no models/resume.pth") as e:
        run_lesson(small_config(small_demo, out, resume=True))
    assert e.value.field == "resume"
    (out / "metrics.csv").write_text("epoch,train_loss\n0,1.0\n")  # a run killed outright
    with pytest.raises(LessonError, match=r"stopped outright \(metrics.csv but no summary.json"):
        run_lesson(small_config(small_demo, out, resume=True))
    _interrupt_at(monkeypatch, "_do_epoch_validate", 2)
    s = run_lesson(small_config(small_demo, out, epochs=2))
    assert s.resume_point == "the end of stage 1's epoch 0 (of 0..1)"
    with pytest.raises(LessonError, match=r"had size 32, epochs 2; this one has size 48, epochs 3"):
        run_lesson(small_config(small_demo, out, epochs=3, size=48, resume=True))
    with pytest.raises(LessonError, match=r"had lr 0.003; this one has lr auto"):
        run_lesson(small_config(small_demo, out, epochs=2, lr=None, resume=True))
    with pytest.raises(LessonError, match=r"had bs 8.* has bs 4") as e:
        lesson.check_config(small_config(small_demo, out, epochs=2, bs=4, resume=True))
    assert e.value.field == "resume"
    file = out / lesson.RESUME
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(LessonError, match="cannot resume from .*resume.pth.*not a readable"):
        run_lesson(small_config(small_demo, out, epochs=2, resume=True))


def test_an_interruption_before_any_epoch_has_nothing_to_resume(tmp_path, small_demo, monkeypatch):
    _interrupt_at(monkeypatch, "_do_epoch_validate", 1)
    s = run_lesson(small_config(small_demo, tmp_path / "run"))
    assert s.interrupted and s.resume_point is None
    assert not (tmp_path / "run" / lesson.RESUME).exists()
