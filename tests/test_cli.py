"""The `fastcore-ext` command: train end to end on a slice of the demo dataset, predict,
lr-find, Ctrl-C, and the exit status and one-line message of each usage error."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastcore_ext.data as data_mod
from fastcore_ext import cli, lesson, model_builder, vision
from fastcore_ext.callback import Callback
from fastcore_ext.data import DEMO_CLASSES, demo_dataset
from fastcore_ext.learner import Learner

SMALL = {"arch": "resnet18", "size": 32, "bs": 8, "epochs": 1, "unfreeze_epochs": 1}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """12 classes x 6 images of 32 px (5 train, 1 valid each)."""
    return demo_dataset(tmp_path_factory.mktemp("demo") / "d", n_per_class=6, size=32)


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    """An empty torchvision cache, and downloads that fail as they do offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, dst, timeout):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(model_builder, "_download", no_network)


@pytest.fixture
def small_defaults(monkeypatch, small_demo):
    """The demo defaults shrunk to a test's size, and the demo dataset to `small_demo`."""
    monkeypatch.setattr(cli, "DEMO_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    monkeypatch.setattr(lesson, "demo_dataset", lambda: small_demo)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """The exit code and what the command printed (not what the test printed before it)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_demo_end_to_end_then_predict(
    tmp_path, capsys, small_demo, small_defaults, offline_weights
):
    out_dir = tmp_path / "run"
    (out_dir / "plots").mkdir(parents=True)
    (out_dir / "plots" / "my_notes.png").write_bytes(b"mine")  # a user's file: kept
    code, out, err = run(capsys, "train", "--out", str(out_dir), "--workers", "0", "--lr", "auto")
    assert code == 0, err
    assert (out_dir / "plots" / "my_notes.png").read_bytes() == b"mine"
    assert ", 2 epochs\n" in out and (  # what this run wrote
        f"output: {out_dir}/ (export.pkl, metrics.csv, metrics.jsonl, plots/, summary.json)" in out
    )
    # the defaults it chose and the pretrained decision are said
    assert "Defaults for the demo dataset: --arch resnet18, --size 32, --bs 8" in out
    assert "pretrained: no (resnet18's ImageNet weights are not in torchvision's cache" in out
    assert "12 classes, 60 train / 12 valid images" in out
    # the lesson: two lr_finds, two fits with the chosen learning rates, epoch tables
    assert out.count("lr_find (lr_find_stage") == 2
    assert "Stage 1: fit_one_cycle(1, max_lr=" in out and "(lr_find's valley)" in out
    assert "Stage 2: unfreeze, fit_one_cycle(1, max_lr=slice(" in out
    assert sum(line.startswith("epoch") for line in out.splitlines()) == 2
    assert "final error rate: " in out and "Summary" in out
    # files
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["pretrained"] is False
    assert summary["interrupted"] is False and summary["arch"] == "resnet18"
    assert 0.0 <= summary["final_error_rate"] <= 1.0
    lo, hi = summary["learning_rates"]["stage2"]
    assert 0 < lo <= hi == pytest.approx(summary["learning_rates"]["stage1"] / 10)
    assert set(summary["time_s"]) >= {"total", "data", "lr_find", "fit", "interpretation"}
    plots = ["lr_find_stage1", "lr_find_stage2", "losses_stage1", "losses_stage2"]
    plots += ["schedule_stage1", "schedule_stage2", "top_losses", "confusion_matrix"]
    for name in plots:
        png = out_dir / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = list(csv.DictReader(open(out_dir / "metrics.csv")))
    assert len(rows) == 2 and set(rows[0]) == {"epoch", "train_loss", "valid_loss", "error_rate",
                                               "time"}  # fmt: skip
    lines = [json.loads(s) for s in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines] == ["stage1", "stage2"]
    assert lines[-1]["error_rate"] == pytest.approx(summary["final_error_rate"])
    assert len(lines[1]["lrs"]) == 3  # one per layer group
    assert "export.pkl" in summary["files"]

    # predict with the exported model: one line per image, class and probability
    images = [str(p) for p in data_mod.get_image_files(small_demo / "valid")][:3]
    code, out, err = run(capsys, "predict", str(out_dir), *images)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    for line, img in zip(lines, images, strict=True):
        path, cls, prob = line.split()
        assert path == img and cls in DEMO_CLASSES and 0.0 < float(prob) <= 1.0
    code, out, err = run(capsys, "predict", str(out_dir / "export.pkl"), images[0])
    assert code == 0 and out.split()[0] == images[0]


def test_ctrl_c_saves_and_exits_130(
    tmp_path, capsys, small_demo, small_defaults, offline_weights, monkeypatch
):
    class Interrupt(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.iter == 2:
                raise KeyboardInterrupt

    real = Learner.fit_one_cycle
    monkeypatch.setattr(
        Learner,
        "fit_one_cycle",
        lambda self, *a, cbs=(), **k: real(self, *a, cbs=[*cbs, Interrupt()], **k),
    )
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--out", str(out_dir), "--lr", "1e-3", "--workers", "0")
    assert code == 130
    assert "Training interrupted at epoch 0" in err and "Interrupted: saved" in err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["epochs_done"] == 0
    state = torch.load(out_dir / "models" / "interrupted.pth", weights_only=True)
    assert state and (out_dir / "export.pkl").is_file()
    image = data_mod.get_image_files(small_demo / "valid")[0]
    assert cli.main(["predict", str(out_dir), str(image)]) == 0


def test_sigterm_saves_as_ctrl_c_and_exits_143(
    tmp_path, capsys, small_demo, small_defaults, offline_weights, monkeypatch
):
    """SIGTERM (timeout, kill, a job scheduler) left metrics and plots but no export.pkl, no
    summary, no message."""

    class Terminate(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.iter == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    real = Learner.fit_one_cycle
    monkeypatch.setattr(
        Learner,
        "fit_one_cycle",
        lambda self, *a, cbs=(), **k: real(self, *a, cbs=[*cbs, Terminate()], **k),
    )
    before = signal.getsignal(signal.SIGTERM)
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--out", str(out_dir), "--lr", "1e-3", "--workers", "0")
    assert code == 143
    assert "Training interrupted at epoch 0" in err and "Interrupted: saved" in err
    assert json.loads((out_dir / "summary.json").read_text())["interrupted"] is True
    assert (out_dir / "models" / "interrupted.pth").is_file() and (out_dir / "export.pkl").is_file()
    assert signal.getsignal(signal.SIGTERM) is before  # put back


def test_a_terminated_train_goes_on_with_resume(
    tmp_path, capsys, small_demo, small_defaults, offline_weights, monkeypatch
):
    """SIGTERM (a job scheduler's preemption) in stage 1's second epoch: the message says
    that `--resume` goes on from the end of the first; the same command with --resume does,
    in the same folder, and the summary says so. Without an interrupted run, --resume is a
    usage error."""
    args = ["train", "--out", str(tmp_path / "run"), "--lr", "1e-3", "--workers", "0",
            "--epochs", "2", "--unfreeze-epochs", "1"]  # fmt: skip
    code, out, err = run(capsys, *args[:3], "--resume")
    assert code == 2 and "--resume: nothing to resume in " in err

    class Terminate(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    real = Learner.fit_one_cycle
    with monkeypatch.context() as m:
        m.setattr(
            Learner,
            "fit_one_cycle",
            lambda self, *a, cbs=(), **k: real(self, *a, cbs=[*cbs, Terminate()], **k),
        )
        code, out, err = run(capsys, *args)
    assert code == 143
    point = "the end of stage 1's epoch 0 (of 0..1)"
    assert f"the same train command with --resume goes on from {point}" in err
    code, out, err = run(capsys, *args, "--resume")
    assert code == 0, err
    assert f"Resuming from {point}" in out and f"  resumed from {point}" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from"] == point and summary["epochs_done"] == 3
    code, out, err = run(capsys, *args, "--resume")
    assert code == 2 and "--resume: nothing to resume" in err  # finished: removed


def test_train_folder_with_fixed_lr_and_valid_pct(tmp_path, capsys, small_demo, offline_weights,
                                                  monkeypatch):  # fmt: skip
    """A PATH without train/valid sub-folders is split by --valid-pct; --lr FLOAT sets stage
    1's rate (no lr_find before it); --unfreeze-epochs 0 skips stage 2."""
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", str(small_demo / "train"), "--valid-pct", "0.25", "--lr", "2e-3",
        "--unfreeze-epochs", "0", "--out", str(out_dir), "--workers", "0", "--seed", "3",
    )  # fmt: skip
    assert code == 0, err
    assert "Defaults for an image folder: --arch resnet18, --size 32, --bs 8, --epochs 1" in out
    assert "valid_pct 0.25" in out and "lr_find (" not in out and "Stage 2" not in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["learning_rates"] == {"stage1": 2e-3} and summary["epochs_done"] == 1
    assert not (out_dir / "plots" / "lr_find_stage1.png").exists()


def test_lr_find_command(tmp_path, capsys, small_demo, offline_weights, monkeypatch):
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    out_dir = tmp_path / "lr"
    code, out, err = run(capsys, "lr-find", str(small_demo), "--out", str(out_dir),
                         "--no-pretrained", "--workers", "0")  # fmt: skip
    assert code == 0, err
    assert "pretrained: no (--no-pretrained)" in out
    assert "valley" in out and "steep" in out and "minimum" in out
    assert "LR Finder is complete" not in out  # the notebook hint: the CLI saves the plot
    assert (out_dir / "plots" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out_dir / "export.pkl").exists()


def test_pretrained_offline_is_a_usage_error(tmp_path, capsys, small_demo, offline_weights):
    code, out, err = run(capsys, "train", str(small_demo), "--pretrained", "--arch", "resnet18",
                         "--bs", "8", "--size", "32", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--pretrained: Pretrained weights for resnet18" in err
    assert "--no-pretrained" in err


def test_pretrained_by_default_when_cached(
    tmp_path, capsys, small_demo, offline_weights, monkeypatch
):
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    weights = vision.models.ResNet18_Weights.DEFAULT
    file = model_builder.weights_cache_file(weights)
    file.parent.mkdir(parents=True)
    torch.save(vision.models.resnet18().state_dict(), file)
    code, out, err = run(capsys, "lr-find", str(small_demo), "--arch", "resnet18", "--size", "32",
                         "--bs", "8", "--workers", "0", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 0, err
    assert f"pretrained: yes (ImageNet weights from {file})" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "{tmp}/missing"],
            "PATH: expected an image folder, got '{tmp}/missing' (missing)",
        ),
        (["train", "{tmp}/empty"], "PATH: no images (.jpg, .png, ...) under '{tmp}/empty'"),
        (["train", "--bs", "1"], "argument --bs: expected an integer >= 2, got 1"),
        (
            ["lr-find", "--lr-find-iters", "3"],
            "argument --lr-find-iters: expected an integer >= 10",
        ),
        (["train", "--epochs", "two"], "argument --epochs: expected an integer >= 1, got 'two'"),
        (["train", "--lr", "fast"], "argument --lr: expected 'auto' or a positive number"),
        (["train", "--lr", "-1"], "argument --lr: expected 'auto' or a positive number"),
        (["train", "--valid-pct", "1.5"], "argument --valid-pct: expected a number in (0, 1)"),
        (["train", "--size", "8"], "argument --size: expected an integer >= 16, got 8"),
        (["train", "--arch", "resnet4"], "--arch: expected a torchvision classification model"),
        (["train", "--nproc", "0"], "argument --nproc: expected an integer >= 1, got 0"),
        (  # checked once before torchrun starts (it was rc 1, printed by every process)
            ["train", "{tmp}/missing", "--nproc", "2"],
            "PATH: expected an image folder, got '{tmp}/missing' (missing)",
        ),
        (["train", "--arch", "resnet4", "--nproc", "2"], "--arch: expected a torchvision"),
        (["predict", "{tmp}/nomodel", "x.jpg"], "MODEL: expected export.pkl or a folder"),
        (["predict"], "the following arguments are required: MODEL, IMAGE"),
        (["fly"], "argument COMMAND: invalid choice: 'fly'"),
        (  # names the sub-command whose options these are not
            ["lr-find", "--nproc", "2"],
            "fastcore-ext lr-find: error: unrecognized arguments: --nproc (see fastcore-ext "
            "lr-find --help)",  # ('2' is read as PATH)
        ),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("no image here")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastcore-ext")
    assert message.format(tmp=tmp_path) in lines[0]


def test_predict_bad_image_and_missing_image(tmp_path, capsys, small_demo, offline_weights):
    learn = vision.create_cnn(
        data_mod.ImageDataBunch.from_folder(small_demo, size=32, bs=8, num_workers=0),
        vision.models.resnet18, pretrained=False, path=tmp_path,
    )  # fmt: skip
    learn.export("export.pkl")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    code, _, err = run(capsys, "predict", str(tmp_path), str(tmp_path / "none.jpg"))
    assert code == 2 and f"skipped {tmp_path}/none.jpg: no such file" in err
    assert "IMAGE: none of the images could be read (1, named above)" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "predict", str(tmp_path), str(tmp_path / "empty"))
    assert code == 2 and f"IMAGE: no image files in {tmp_path}/empty" in err
    code, out, err = run(capsys, "predict", str(tmp_path), str(bad))
    assert code == 2 and out == ""  # nothing could be predicted
    assert err.strip().splitlines() == [
        f"fastcore-ext predict: skipped {bad}: not a readable image (cannot identify image "
        f"file '{bad}')",
        "fastcore-ext predict: error: IMAGE: none of the images could be read (1, named above)",
    ]
    not_export = tmp_path / "notes.pth"
    torch.save({"x": 1}, not_export)
    code, _, err = run(capsys, "predict", str(not_export), str(bad))
    assert code == 2 and "MODEL:" in err and "not a fastcore_ext export" in err
    (tmp_path / "export.pkl").rename(tmp_path / "export.pth")  # an older version's name
    code, _, err = run(capsys, "predict", str(tmp_path), str(bad))
    assert code == 2 and f"no such file: {tmp_path}/export.pkl ({tmp_path}/export.pth is" in err


@pytest.mark.parametrize("bs", [64, 1, 2])  # 2: a batch around the unreadable file
def test_predict_skips_an_unreadable_image_and_predicts_the_others(
    tmp_path, capsys, small_demo, offline_weights, monkeypatch, bs
):
    monkeypatch.setattr(cli, "PREDICT_BS", bs)  # files go through the model PREDICT_BS at once
    learn = vision.create_cnn(
        data_mod.ImageDataBunch.from_folder(small_demo, size=32, bs=8, num_workers=0),
        vision.models.resnet18, pretrained=False, path=tmp_path,
    )  # fmt: skip
    learn.export("export.pkl")
    good = sorted((small_demo / "valid").rglob("*.*"))[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not an image\n")
    missing = tmp_path / "typo.jpg"  # a missing file stopped every prediction (exit 2)
    code, out, err = run(
        capsys, "predict", str(tmp_path), str(good[0]), str(bad), str(missing), str(good[1])
    )
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [str(good[0]), str(good[1])]
    assert all(line.split()[1] in DEMO_CLASSES for line in lines)
    assert err.splitlines() == [
        f"fastcore-ext predict: skipped {bad}: not a readable image (cannot identify image "
        f"file '{bad}')",
        f"fastcore-ext predict: skipped {missing}: no such file",
        "fastcore-ext predict: 2 of 4 images skipped",
    ]
    assert "skip_bad" not in err  # not an option of this command
    folder = small_demo / "valid" / DEMO_CLASSES[0]  # a folder: every image under it
    code, out, _ = run(capsys, "predict", str(tmp_path), str(folder))
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        str(p) for p in sorted(folder.iterdir())
    ]
    loaded = cli.load_learner(tmp_path / "export.pkl")  # the lines are predict's answers
    for line in out.splitlines():  # (up to bf16's batch-size-dependent rounding)
        file, name, prob = line.split()
        probs = loaded.predict(file)[2]
        assert abs(float(prob) - float(probs[loaded.data.classes.index(name)])) < 0.01
        assert float(prob) > float(probs.max()) - 0.01


def test_predict_csv_quotes_paths_and_class_names(tmp_path, capsys, small_demo, offline_weights):
    # class names and file names with a comma, a space and a quote: the aligned columns
    # cannot be split back, --csv can
    src = sorted((small_demo / "train").iterdir())[:2]
    names = ["cat, dog", 'say "hi"']
    for name, folder in zip(names, src, strict=True):
        shutil.copytree(folder, tmp_path / "data" / name)
    learn = vision.create_cnn(
        data_mod.ImageDataBunch.from_folder(tmp_path / "data", valid_pct=0.25, size=32, bs=4,
                                            num_workers=0),
        vision.models.resnet18, pretrained=False, path=tmp_path,
    )  # fmt: skip
    learn.export("export.pkl")
    odd = tmp_path / 'a, b "c".jpg'
    shutil.copy(next((tmp_path / "data" / names[0]).iterdir()), odd)
    plain = next((tmp_path / "data" / names[1]).iterdir())
    code, out, err = run(capsys, "predict", str(tmp_path), str(odd), str(plain), "--csv")
    assert code == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["file", "prediction", "probability"]
    assert [r[0] for r in rows[1:]] == [str(odd), str(plain)]
    for file, name, prob in rows[1:]:
        probs = learn.predict(file)[2]
        assert name in names and 0.0 < float(prob) <= 1.0
        assert abs(float(prob) - float(probs[learn.data.classes.index(name)])) < 0.01
    # --probs: every class's probability, a column each (named by the class)
    code, out, err = run(capsys, "predict", str(tmp_path), str(plain), "--csv", "--probs")
    assert code == 0, err
    header, row = list(csv.reader(out.splitlines()))
    assert header == ["file", "prediction", "probability", *learn.data.classes]
    each = [float(p) for p in row[3:]]
    assert sum(each) == pytest.approx(1.0, abs=1e-5) and max(each) == pytest.approx(
        float(row[2]), abs=1e-4
    )
    code, out, err = run(capsys, "predict", str(tmp_path), str(plain), "--probs")
    assert code == 0 and all(f"{c}=" in out for c in learn.data.classes)


def test_predict_into_a_closed_pipe_stops_quietly(tmp_path, small_demo):
    """`fastcore-ext predict ... | head -1`: the reader goes away; the command stops with 141
    (128 + SIGPIPE, as a shell reports such a process) and no traceback."""
    learn = vision.create_cnn(
        data_mod.ImageDataBunch.from_folder(small_demo, size=32, bs=4, num_workers=0),
        vision.models.resnet18, pretrained=False, path=tmp_path,
    )  # fmt: skip
    learn.export("export.pkl")
    images = [str(p) for p in sorted((small_demo / "valid").rglob("*.jpg"))[:3]]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastcore_ext", "predict", str(tmp_path), *images],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdout.close()  # before the command writes its first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == cli.EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("command", ["train", "predict", "lr-find"])
def test_help_of_each_command(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fastcore-ext {command}")
    if command == "predict":
        assert "--csv" in out and "--probs" in out
    else:
        for flag in ("--arch", "--size", "--bs", "--pretrained", "--no-pretrained", "--bf16",
                     "--cache", "--workers", "--seed", "--out", "--valid-pct"):  # fmt: skip
            assert flag in out
    if command == "train":
        assert "--epochs" in out and "--unfreeze-epochs" in out and "--lr" in out


def test_python_dash_m_runs_the_cli():
    r = subprocess.run(
        [sys.executable, "-m", "fastcore_ext", "train", "--bs", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "fastcore-ext train: argument --bs: expected an integer >= 2, got 'x' "
        "(see fastcore-ext train --help)"
    )


def test_a_batch_larger_than_the_data_is_a_usage_error(tmp_path, capsys, small_demo):
    code, _, err = run(capsys, "lr-find", str(small_demo), "--bs", "100", "--size", "32",
                       "--no-pretrained", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and err.startswith("fastcore-ext lr-find: error: --bs: 100 is larger")


@pytest.mark.slow
def test_train_nproc_2_runs_two_gloo_processes(tmp_path, small_demo):
    """--nproc 2: torchrun starts two CPU processes (gloo); rank 0 alone prints the summary
    and writes the files, the model is exported once."""
    out_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "fastcore_ext", "train", str(small_demo), "--nproc", "2",
            "--arch", "resnet18", "--size", "32", "--bs", "8", "--epochs", "1",
            "--unfreeze-epochs", "0", "--lr", "1e-3", "--workers", "0", "--no-pretrained",
            "--out", str(out_dir)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting 2 processes" in proc.stdout
    assert proc.stdout.count("\nSummary") == 1
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and 0.0 <= summary["final_error_rate"] <= 1.0
    assert len((out_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out_dir / "export.pkl").is_file()


def test_nproc_checks_bs_against_each_process_share(small_demo, capsys, tmp_path):
    n_train = len(list((small_demo / "train").rglob("*.jpg")))
    bs = n_train // 2 + 1  # one process could train with it; each of two gets n_train // 2
    code, _, err = run(capsys, "train", str(small_demo), "--nproc", "2", "--bs", str(bs),
                       "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        f"--bs: {bs} is larger than each of the 2 processes' share of the training set "
        f"({n_train // 2} of {n_train} items)" in err
    )


def test_nproc_is_taken_out_of_the_command():
    assert cli._without_nproc(["train", "--nproc", "2", "--bs", "8"]) == ["train", "--bs", "8"]
    assert cli._without_nproc(["train", "--nproc=4", "x"]) == ["train", "x"]


@pytest.fixture(scope="module")
def pets_style(small_demo, tmp_path_factory):
    """The 72 images of `small_demo` in one flat folder, named as Oxford-IIIT Pets' are:
    images/<Class_name>_<n>.jpg (every other class capitalized like Pets' cats, the others
    with a '_' inside like 'american_bulldog')."""
    images = tmp_path_factory.mktemp("pets") / "images"
    images.mkdir()
    for k, f in enumerate(data_mod.get_image_files(small_demo)):
        shutil.copy(f, images / f"{pets_name(f.parent.name)}_{k}.jpg")
    return images


def pets_name(cls: str) -> str:
    return cls.capitalize() if DEMO_CLASSES.index(cls) % 2 == 0 else f"big_{cls}"


PETS_RE = r"/([^/]+)_\d+.jpg$"


def test_train_on_a_pets_style_folder_with_label_re(
    tmp_path, capsys, pets_style, offline_weights, monkeypatch
):
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    names = sorted(f.name for f in pets_style.iterdir())
    expected = {
        "Arrow", "big_circle", "Crescent", "big_cross", "Ellipse", "big_hexagon",
        "Pentagon", "big_rectangle", "Ring", "big_square", "Star", "big_triangle",
    }  # fmt: skip
    assert {pets_name(c) for c in DEMO_CLASSES} == expected
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", str(pets_style), "--label-re", PETS_RE, "--lr", "1e-3",
        "--unfreeze-epochs", "0", "--out", str(out_dir), "--workers", "0",
    )  # fmt: skip
    assert code == 0, err
    n_valid = int(0.2 * 72)  # fastai's rule: int(valid_pct * n) items to validation
    assert f"{len(expected)} classes, {72 - n_valid} train / {n_valid} valid images" in out
    assert "labels from file names" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and 0.0 <= summary["final_error_rate"] <= 1.0
    image = pets_style / names[0]
    code, out, err = run(capsys, "predict", str(out_dir), str(image))
    assert code == 0, err
    assert out.split()[1] in expected


def test_pets_style_folder_without_or_with_a_bad_label_re(tmp_path, capsys, pets_style):
    common = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained",
              "--out", str(tmp_path / "o")]  # fmt: skip
    code, _, err = run(capsys, "train", str(pets_style), *common)
    assert code == 2 and "PATH: 72 images lie directly in" in err
    assert "each image must be inside a folder named after its class" in err
    few = tmp_path / "few"  # 4 loose images: the layout is said, not the 0.2 split of 4
    few.mkdir()
    for name in sorted(p.name for p in pets_style.iterdir())[:4]:
        shutil.copy(pets_style / name, few / name)
    code, _, err = run(capsys, "train", str(few), *common)
    assert code == 2 and "PATH: 4 images lie directly in" in err and "valid" not in err
    code, _, err = run(capsys, "train", str(pets_style), "--label-re", "_\\d+.jpg$", *common)
    assert code == 2 and "--label-re: expected a regular expression with a group" in err
    code, _, err = run(capsys, "train", str(pets_style), "--label-re", "/(dog)_", *common)
    assert code == 2 and "--label-re: pat: the pattern '/(dog)_' does not match file" in err
    code, _, err = run(capsys, "train", str(pets_style), "--label-re", "([", *common)
    assert code == 2 and "--label-re: expected a regular expression, got '(['" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def csv_labelled(small_demo, tmp_path_factory):
    """The 72 images of `small_demo` as MNIST_SAMPLE lays its files out for from_csv:
    root/images/<n>.jpg named by number only, and root/labels.csv with `name,label` rows
    whose names are relative to root."""
    root = tmp_path_factory.mktemp("csv")
    (root / "images").mkdir()
    rows = ["name,label"]
    for k, f in enumerate(data_mod.get_image_files(small_demo)):
        shutil.copy(f, root / "images" / f"{k}.jpg")
        rows.append(f"images/{k}.jpg,{f.parent.name}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_train_with_labels_csv(tmp_path, capsys, csv_labelled, offline_weights, monkeypatch):
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "lr_find_iters": 8})
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", str(csv_labelled), "--labels-csv", "labels.csv", "--lr", "1e-3",
        "--unfreeze-epochs", "0", "--out", str(out_dir), "--workers", "0",
        "--precision", "fp32",
    )  # fmt: skip
    assert code == 0, err
    n_valid = int(0.2 * 72)
    assert f"{len(DEMO_CLASSES)} classes, {72 - n_valid} train / {n_valid} valid images" in out
    assert f"labels from {csv_labelled / 'labels.csv'}" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["epochs_done"] == 1
    code, out, err = run(capsys, "predict", str(out_dir), str(csv_labelled / "images" / "0.jpg"))
    assert code == 0, err
    assert out.split()[1] in DEMO_CLASSES


def test_compile_where_torch_compile_cannot_run(tmp_path, capsys, small_defaults, monkeypatch):
    """--compile reaches learn.compile; where torch.compile cannot run, a one-line usage error
    names the option and the cause."""

    def unsupported():
        raise RuntimeError("Python 3.15+ not yet supported for torch.compile")

    monkeypatch.setattr("torch._dynamo.eval_frame.check_if_dynamo_supported", unsupported)
    out = str(tmp_path / "o")
    code, _, err = run(capsys, "train", "--compile", "--precision", "fp32", "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--compile: learn.compile: torch.compile cannot run here (Python 3.15+" in err


def test_labels_csv_and_precision_mistakes(tmp_path, capsys, csv_labelled):
    common = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--no-pretrained",
              "--out", str(tmp_path / "o")]  # fmt: skip
    code, _, err = run(capsys, "train", str(csv_labelled), "--labels-csv", "nope.csv", *common)
    assert code == 2 and "--labels-csv: expected a CSV file of name,label rows: neither " in err
    assert f"'nope.csv' nor '{csv_labelled / 'nope.csv'}' exists" in err  # both places tried
    missing = tmp_path / "gone.csv"
    code, _, err = run(capsys, "train", str(csv_labelled), "--labels-csv", str(missing), *common)
    assert code == 2 and f"rows: {missing} does not exist" in err
    code, _, err = run(
        capsys, "train", str(csv_labelled), "--labels-csv", "labels.csv", "--label-re", "/(a)",
        *common,
    )  # fmt: skip
    assert code == 2 and "--labels-csv: expected labels from file names (label_re) or" in err
    code, _, err = run(
        capsys, "train", str(csv_labelled), "--labels-csv", "labels.csv", "--precision", "fp16",
        *common,
    )  # fmt: skip
    assert code == 2 and "--precision: expected auto, fp32 or bf16 on cpu, got 'fp16'" in err
    code, _, err = run(capsys, "train", "--precision", "fp64", *common)
    assert code == 2 and "--precision" in err and "fp64" in err


def test_train_reports_unreadable_images(tmp_path, capsys, small_demo, offline_weights,
                                         monkeypatch):  # fmt: skip
    """A folder with a truncated JPEG (train) and a text file named .jpg (valid): training
    skips both, the final lines and summary.json count and name them."""
    monkeypatch.setattr(cli, "FOLDER_DEFAULTS", {**SMALL, "bs": 6, "lr_find_iters": 8})
    root = tmp_path / "bad"
    shutil.copytree(small_demo, root)
    truncated = sorted((root / "train" / "star").glob("*.jpg"))[0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    text = sorted((root / "valid" / "arrow").glob("*.jpg"))[0]
    text.write_text("not an image")
    names = sorted(str(p.relative_to(root)) for p in (truncated, text))
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", str(root), "--lr", "1e-3", "--unfreeze-epochs", "0",
                         "--out", str(out_dir), "--workers", "0", "--no-pretrained")  # fmt: skip
    assert code == 0, err
    warned = [w for w in err.splitlines() if "unreadable image(s)" in w]
    assert warned and all(w.startswith("fastcore-ext: warning: epoch ") for w in warned)
    assert "runpy" not in err and "UserWarning" not in err  # no source line to point at
    line = f"  unreadable images skipped during the run: 2 ({', '.join(names)})"
    assert line in out.splitlines()
    assert "--skip-bad" not in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["bad_images"] == {"skipped": 2, "dropped": 0, "skipped_files": names,
                                     "dropped_files": []}  # fmt: skip


def test_lr_find_iters_option_sets_each_sweeps_steps():
    """A sweep of fastai's 100 steps is several epochs of a small folder (a trial: lr_find
    took 4:38 of a 6-minute run on 96 images): --lr-find-iters shortens it."""
    for cmd in ("train", "lr-find"):
        args = cli.build_parser().parse_args([cmd, "somewhere", "--lr-find-iters", "30"])
        cli._resolve_defaults(args, training=cmd == "train")
        assert cli._config(args, training=cmd == "train").lr_find_iters == 30
    args = cli.build_parser().parse_args(["train", "somewhere"])
    cli._resolve_defaults(args, training=True)
    assert cli._config(args, training=True).lr_find_iters == 100


def test_skip_bad_option_and_its_summary_line(capsys):
    args = cli.build_parser().parse_args(["train", "somewhere", "--skip-bad"])
    cli._resolve_defaults(args, training=True)
    assert cli._config(args, training=True).skip_bad is True
    args = cli.build_parser().parse_args(["train", "somewhere"])
    cli._resolve_defaults(args, training=True)
    assert cli._config(args, training=True).skip_bad is False
    bad = lesson.BadImages(skipped=0, dropped=23, dropped_files=[f"{k:02d}.jpg" for k in range(20)])
    summary = lesson.LessonSummary(
        data="d", arch="resnet18", size=32, bs=8, pretrained=False, precision="fp32", epochs=1,
        unfreeze_epochs=0, epochs_done=1, learning_rates={"stage1": 1e-3},
        final_error_rate=0.5, final_valid_loss=1.0, most_confused=[], time_s={"total": 1.0},
        interrupted=False, files=[], out=Path("o"), bad_images=bad,
    )  # fmt: skip
    cli._print_summary(summary)
    out = capsys.readouterr().out
    assert "  unreadable images left out by --skip-bad: 23 (00.jpg, 01.jpg," in out
    assert "19.jpg, and 3 more)" in out and "skipped during the run" not in out
    assert "most confused: no pair of classes confused twice or more" in out


def test_an_interrupted_summary_claims_no_most_confused(capsys):
    """Interrupted after an epoch, before the interpretation: the summary said "most confused:
    no pair of classes confused twice or more" of pairs never counted."""
    summary = lesson.LessonSummary(
        data="d", arch="resnet18", size=32, bs=8, pretrained=False, precision="fp32", epochs=3,
        unfreeze_epochs=0, epochs_done=1, learning_rates={"stage1": 1e-3},
        final_error_rate=0.6667, final_valid_loss=1.0, most_confused=[], time_s={"total": 1.0},
        interrupted=True, files=[], out=Path("o"),
    )  # fmt: skip
    cli._print_summary(summary)
    out = capsys.readouterr().out
    assert "Summary (interrupted)" in out and "final error rate: 0.6667" in out
    assert "most confused" not in out


def test_a_usage_error_is_printed_by_rank_zero_only(capsys, monkeypatch):
    """Under torchrun every process found the error and printed it."""
    monkeypatch.setattr(cli, "launch_rank", lambda: 1)
    code, out, err = run(capsys, "train", "--arch", "resnet4")
    assert code == 2 and err == ""
    monkeypatch.setattr(cli, "launch_rank", lambda: 0)
    code, out, err = run(capsys, "train", "--arch", "resnet4")
    assert code == 2 and "--arch: expected a torchvision classification model" in err


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_a_path_that_is_no_folder_is_refused_before_anything_is_printed(tmp_path, capsys, command):
    """The 'Defaults for an image folder' line came before the PATH error."""
    code, out, err = run(capsys, command, str(tmp_path / "missing"))
    assert (code, out) == (2, "") and "PATH: expected an image folder" in err


def test_predict_columns_count_terminal_columns():
    """A CJK file name takes two columns a character: padding by len() misaligned the
    predictions after it (a trial's folder of photos named in Japanese)."""
    assert cli.display_width("cat.jpg") == 7
    assert cli.display_width("猫の写真.jpg") == 12
    assert cli.display_width("cafe\u0301.jpg") == 8  # a combining accent takes none
    names = ["a.jpg", "猫猫.jpg", "cafe\u0301.jpg"]
    width = max(map(cli.display_width, names))
    assert {cli.display_width(cli._padded(n, width)) for n in names} == {width}
