"""Every Learner-side call of fastai v1's lesson 1 (lesson1-pets) and lesson 2
(lesson2-download) notebooks, in their spelling, on a tiny learner (resnet18 from scratch,
32 px demo data), with what v1 returned."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from fastcore_ext.callback import ShowGraph
from fastcore_ext.vision import (
    ClassificationInterpretation,
    DatasetType,
    EarlyStoppingCallback,
    ImageDataBunch,
    SaveModelCallback,
    create_cnn,
    demo_dataset,
    error_rate,
    get_transforms,
    imagenet_stats,
    load_learner,
    models,
    open_image,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = demo_dataset(tmp_path_factory.mktemp("v1_calls") / "demo", n_per_class=3, size=32)
    np.random.seed(2)
    return ImageDataBunch.from_folder(
        folder, ds_tfms=get_transforms(), size=32, bs=8, num_workers=0
    ).normalize(imagenet_stats)


@pytest.fixture(scope="module")
def learn(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("v1_learner")
    learn = create_cnn(
        data,
        models.resnet18,
        metrics=error_rate,
        pretrained=False,
        ps=0.3,
        lin_ftrs=[32],
        model_dir="weights",
        path=path,
        precision="fp32",
    )
    learn.progress.stream = io.StringIO()
    learn.fit_one_cycle(1, 3e-3)
    return learn


def test_create_cnn_takes_v1s_head_and_place_arguments(learn, data):
    head = learn.model[1]
    drops = [m.p for m in head if isinstance(m, torch.nn.Dropout)]
    linears = [(m.in_features, m.out_features) for m in head if isinstance(m, torch.nn.Linear)]
    assert drops == [0.15, 0.3]  # v1's ps: the last dropout, ps/2 before
    assert linears == [(1024, 32), (32, data.c)]
    assert learn.model_dir.name == "weights" and learn.path.name.startswith("v1_learner")
    assert learn.data.classes == data.classes and len(data.classes) == 12


def test_fit_one_cycle_v1_arguments(learn):
    learn.fit_one_cycle(
        1, max_lr=slice(1e-4, 1e-3), moms=(0.95, 0.85), div_factor=25.0, pct_start=0.3, wd=1e-2
    )
    moms = learn.recorder.moms
    assert moms[0] == pytest.approx(0.95) and min(moms) < 0.9
    lrs = learn.recorder.group_lrs[0]
    assert lrs[0] == pytest.approx(lrs[-1] / 10)  # slice(1e-4, 1e-3) over 3 groups: x10
    learn.fit(1, 1e-4)


def test_save_load_freeze_unfreeze(learn):
    path = learn.save("stage-2")
    assert path == learn.path / learn.model_dir / "stage-2.pth"
    assert learn.load("stage-2") is learn
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())
    learn.freeze_to(1)
    assert (
        not learn.model[0][0].weight.requires_grad
        and learn.model[0][6][0].conv1.weight.requires_grad
    )
    learn.freeze()
    assert not learn.model[0][6][0].conv1.weight.requires_grad
    assert learn.model[1][-1].weight.requires_grad


def test_lr_find_and_the_recorder_plots(learn, capsys):
    learn.lr_find(start_lr=1e-5, end_lr=1, num_it=12, stop_div=True)
    fig = learn.recorder.plot(suggestion=True, skip_start=1, skip_end=1)
    assert isinstance(fig, Figure)
    assert "Min numerical gradient" in capsys.readouterr().out
    learn.fit_one_cycle(1, 1e-3)
    for fig in (
        learn.recorder.plot_losses(),
        learn.recorder.plot_lr(show_moms=True),
        learn.recorder.plot_metrics(),
    ):
        assert isinstance(fig, Figure)
    assert len(learn.recorder.plot_lr(show_moms=True).axes) == 2


def test_interpretation(learn, data):
    interp = learn.interpret()
    assert isinstance(interp, ClassificationInterpretation)
    losses, idxs = interp.top_losses()
    assert len(data.valid_ds) == len(losses) == len(idxs)
    assert isinstance(interp.plot_confusion_matrix(figsize=(12, 12), dpi=60), Figure)
    assert isinstance(interp.plot_top_losses(9, figsize=(15, 11)), Figure)
    assert isinstance(interp.most_confused(min_val=2), list)
    same = ClassificationInterpretation.from_learner(learn)
    assert torch.equal(same.losses, interp.losses) and torch.equal(same.probs, interp.probs)
    tta = learn.interpret(tta=True)
    preds, y, tta_losses = learn.TTA(with_loss=True)
    assert torch.equal(tta.probs, preds) and torch.equal(tta.losses, tta_losses)


def test_predictions(learn, data):
    preds, y = learn.get_preds(ds_type=DatasetType.Valid)
    assert preds.shape == (len(data.valid_ds), 12) and y.shape == (len(data.valid_ds),)
    assert learn.get_preds(DatasetType.Train)[0].shape[0] == len(data.train_ds)
    loss, err = learn.validate()
    assert learn.validate(learn.data.valid_dl) == [loss, err]
    preds, y = learn.TTA()
    assert preds.shape == (len(data.valid_ds), 12)
    assert "Total params" in str(learn.summary())


def test_export_load_learner_predict(learn, data):
    learn.export()
    loaded = load_learner(learn.path)
    img = open_image(data.valid_ds.items[0])
    pred_class, pred_idx, outputs = loaded.predict(img)
    assert pred_class.obj == str(pred_class) == data.classes[int(pred_idx)]
    assert isinstance(pred_idx, torch.Tensor) and pred_idx.dtype == torch.int64
    assert pred_class.data == pred_idx and outputs.shape == (12,)
    assert int(outputs.argmax()) == int(pred_idx)


def test_v1_callbacks_in_a_fit(learn):
    learn.callback_fns.append(ShowGraph)
    try:
        learn.fit_one_cycle(
            2,
            1e-3,
            callbacks=[
                SaveModelCallback(learn, every="improvement", monitor="error_rate", name="best"),
                EarlyStoppingCallback(learn, monitor="valid_loss", min_delta=0.0, patience=3),
            ],
        )
    finally:
        learn.callback_fns.remove(ShowGraph)
    assert (learn.path / learn.model_dir / "best.pth").is_file()
    learn2 = create_cnn(
        learn.data,
        models.resnet18,
        pretrained=False,
        path=learn.path,
        callback_fns=[partial(SaveModelCallback, every="epoch", name="each")],
        precision="fp32",
    )
    learn2.progress.stream = io.StringIO()
    learn2.fit(1)
    assert (learn.path / "models" / "each_0.pth").is_file()


def test_purge_and_destroy(data, tmp_path):
    learn = create_cnn(data, models.resnet18, pretrained=False, path=tmp_path, precision="fp32")
    learn.progress.stream = io.StringIO()
    learn.fit(1)
    assert learn.purge() is learn
    learn.fit(1)
    learn.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        learn.fit(1)
