"""Learner.data / dls: swapping the data checks it against the model (another class count is
refused, other class names or order warned about, the same classes accepted silently, as
fastai v1's progressive resizing needs), and a destroyed learner raises its own error from
every method."""

from __future__ import annotations

import warnings

import pytest
import torch
from fakes import FakeBunch, easy_bunch, make_learner, tiny_model
from torch import nn

from fastcore_ext.learner import Learner
from fastcore_ext.vision import create_cnn


def bunch(n_classes: int, size: int = 8, classes: list[str] | None = None) -> FakeBunch:
    """`n_classes` classes of random images (targets in range)."""
    g = torch.Generator().manual_seed(n_classes)
    x = torch.randn(48, 3, size, size, generator=g)
    y = torch.randint(0, n_classes, (48,), generator=g)
    data = FakeBunch(x[:32], y[:32], x[32:], y[32:], n_classes=n_classes)
    if classes is not None:
        data.classes = classes
    return data


def no_warning(f) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f()


# ---- the data setter --------------------------------------------------------------------------
def test_data_of_another_class_count_is_refused():
    """What the probe met: learn.data = data2 (2 classes) under a 3-output head: validate
    gave nonsense, predict an IndexError, save recorded the wrong classes."""
    model = tiny_model()
    model[-1] = nn.Linear(8, 3)
    learn = make_learner(data=bunch(3), model=model)
    before = learn.data
    with pytest.raises(ValueError) as excinfo:
        learn.data = bunch(2)
    message = str(excinfo.value)
    assert "the data has 2 classes (data.c = 2), but the model has 3 outputs" in message
    assert "new learner" in message and "create_cnn" in message
    assert learn.data is before  # unchanged
    with pytest.raises(ValueError, match="data.c = 4"):
        learn.dls = bunch(4)  # fastai v2's name
    assert learn.data is before


def test_construction_warns_of_another_class_count_and_fit_refuses_it():
    """A warning, not an error, at construction: fastai's MixUp picture builds a Learner
    around nn.Linear(3, 4) that it never calls; the fit refuses the model at its first
    batch."""
    model = tiny_model()  # 2 outputs
    with pytest.warns(UserWarning, match=r"data.c = 5\), but the model has 2 outputs.*a fit"):
        learn = Learner(bunch(5), model, precision="fp32")
    with pytest.raises(ValueError, match="it gives 2 outputs per item and the data has 5"):
        learn.fit(1)


def test_create_cnn_heads_are_read(tmp_path):
    """create_cnn's model is nn.Sequential(body, head): the head's last Linear gives the
    count (its Dropout / BatchNorm before it are not the end)."""
    learn = create_cnn(easy_bunch(size=32), "resnet18", pretrained=False, path=tmp_path)
    with pytest.raises(ValueError, match="the model has 2 outputs"):
        learn.data = bunch(3, size=32)


def test_the_same_classes_at_another_size_swap_silently():
    """fastai v1's lesson 3: learn.data = data_256 (the same classes, bigger images)."""
    learn = make_learner()
    bigger = easy_bunch(size=16)
    no_warning(lambda: setattr(learn, "data", bigger))
    assert learn.data is bigger and learn.dls is bigger
    learn.fit(1)
    assert learn.recorder.values  # trained on the new data


@pytest.mark.parametrize(
    ("classes", "how"),
    [
        (["class1", "class0"], "the same in another order"),
        (["cat", "dog"], "other classes"),
    ],
)
def test_other_classes_of_the_same_count_are_warned_about(classes, how):
    """Kept (fine-tuning on another problem of as many classes is legitimate), but the
    model's outputs now name other classes until trained."""
    learn = make_learner()
    other = bunch(2, classes=classes)
    with pytest.warns(UserWarning, match=how) as record:
        learn.data = other
    message = str(record[0].message)
    assert f"{classes!r}, where the model's outputs stand for ['class0', 'class1']" in message
    assert record[0].filename == __file__  # attributed to the user's line
    assert learn.data is other
    original = learn.data
    no_warning(lambda: setattr(learn, "data", bunch(2)))  # back to the model's classes: silent
    assert learn.data is not original


def test_models_whose_outputs_are_unknown_are_not_refused():
    """A module that is not a Sequential may call its layers in any order: no guess, only a
    warning when the class count changes."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    learn = make_learner(model=Net(), splitter=None)
    learn.data = bunch(2)
    with pytest.warns(UserWarning, match="the new data has 3 classes, the model was made for 2"):
        learn.data = bunch(3)  # the classes it was made for are all there is to compare with
    squeeze = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    make_learner(data=bunch(3), model=squeeze, splitter=None)  # ends with no Linear


# ---- destroy -------------------------------------------------------------------------------------
CALLS = {
    "fit": lambda learn: learn.fit(1),
    "fit_one_cycle": lambda learn: learn.fit_one_cycle(1),
    "fine_tune": lambda learn: learn.fine_tune(1),
    "lr_find": lambda learn: learn.lr_find(),
    "validate": lambda learn: learn.validate(),
    "get_preds": lambda learn: learn.get_preds(),
    "predict": lambda learn: learn.predict(torch.rand(3, 8, 8)),
    "tta": lambda learn: learn.tta(),
    "save": lambda learn: learn.save("x"),
    "load": lambda learn: learn.load("x"),
    "export": lambda learn: learn.export(),
    "freeze": lambda learn: learn.freeze(),
    "unfreeze": lambda learn: learn.unfreeze(),
    "freeze_to": lambda learn: learn.freeze_to(1),
    "purge": lambda learn: learn.purge(),
    "summary": lambda learn: learn.summary(),
    "interpret": lambda learn: learn.interpret(),
    "to_fp32": lambda learn: learn.to_fp32(),
    "to_channels_last": lambda learn: learn.to_channels_last(),
    "data": lambda learn: setattr(learn, "data", easy_bunch()),
}


@pytest.mark.parametrize("method", list(CALLS))
def test_every_method_of_a_destroyed_learner_says_it_was_destroyed(method, tmp_path, capsys):
    """fit_one_cycle raised a TypeError about set_one_cycle, export a ValueError about
    create_cnn models, freeze / purge errors about layer groups or parameters."""
    learn = make_learner(path=tmp_path)
    learn.save("x")
    learn.destroy()
    with pytest.raises(RuntimeError, match=r"this Learner was destroyed \(learn.destroy\(\)\)"):
        CALLS[method](learn)
