"""Learner.compile (fastcore_ext.compiling): the model's forward through torch.compile.

Most tests compile with a counting wrapper around torch's "aot_eager" backend: Dynamo and
AOTAutograd as inductor uses them (the forward and its backward traced into graphs), the
graphs run by eager kernels, so a test takes seconds instead of inductor's C++ compile
(about 20 s per variant on the 2-core CPU here); the count shows that the compiled path ran.
One slow test runs inductor itself.
"""

import pytest
import torch
from fakes import make_learner
from torch._dynamo import lookup_backend

from fastcore_ext.compiling import CompileError


class CountingBackend:
    """A torch.compile backend: aot_eager, counting the graphs it is handed."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return lookup_backend("aot_eager")(gm, example_inputs)


def fit_and_preds(compile_kwargs=None, epochs=2):
    """A seeded one-cycle fit of the tiny CNN, then get_preds: (learner, training losses,
    validation losses, probabilities)."""
    learn = make_learner(seed=0)
    if compile_kwargs is not None:
        learn.compile(**compile_kwargs)
    learn.fit_one_cycle(epochs, 1e-2)
    probs, _ = learn.get_preds()
    rec = learn.recorder
    return learn, torch.tensor(rec.raw_losses), torch.tensor(rec.valid_losses), probs


def test_compiled_fit_equals_eager_fit():
    """aot_eager runs the same aten ops in the same order as eager: fp32 defaults hold."""
    backend = CountingBackend()
    learn, losses, valid, probs = fit_and_preds({"backend": backend})
    _, losses0, valid0, probs0 = fit_and_preds()
    assert backend.graphs >= 2  # training (forward + backward) and eval under inference_mode
    torch.testing.assert_close(losses, losses0)
    torch.testing.assert_close(valid, valid0)
    torch.testing.assert_close(probs, probs0)
    assert learn.compiled.module._orig_mod is learn.model


@pytest.mark.slow
def test_inductor_fit_matches_eager_fit():
    """Inductor on the CPU (about 25 s here). Its kernels fuse ops and reorder fp32 sums
    (BatchNorm's statistics, the pooled mean), a few ulp per op that the steps carry forward
    into the weights and running statistics: measured on the Zen 4 here, at most 2e-7
    relative on the training losses and 2.3e-5 on the validation loss over 2 epochs.
    rtol 1e-3 leaves room for other vector widths and still fails a model that did not
    train the same way. Dropout draws from eager's generator (fallback_random), as the
    eager fit does."""
    with torch._inductor.config.patch(fallback_random=True):
        learn, losses, valid, probs = fit_and_preds({})
    _, losses0, valid0, probs0 = fit_and_preds()
    tol = {"rtol": 1e-3, "atol": 1e-5}
    torch.testing.assert_close(losses, losses0, **tol)
    torch.testing.assert_close(valid, valid0, **tol)
    torch.testing.assert_close(probs, probs0, **tol)
    assert losses[-4:].mean() < losses[:4].mean()  # it trained


def test_save_load_keys_unchanged(tmp_path):
    """A checkpoint of a compiled learner has the module's own keys (no `_orig_mod.`) and
    loads into an eager learner, which then predicts what the compiled one does."""
    backend = CountingBackend()
    learn = make_learner(seed=0, path=tmp_path).compile(backend=backend)
    keys = list(learn.model.state_dict())
    learn.fit_one_cycle(1, 1e-2)
    file = learn.save("stage-1")
    saved = torch.load(file, map_location="cpu", weights_only=True)
    text = repr(saved)
    assert "_orig_mod" not in text
    other = make_learner(seed=1, path=tmp_path).load("stage-1")
    assert list(other.model.state_dict()) == keys
    torch.testing.assert_close(other.get_preds()[0], learn.get_preds()[0])
    learn.load("stage-1")  # and back into the compiled learner
    assert list(learn.model.state_dict()) == keys


def test_get_preds_compiled_under_inference_mode():
    backend = CountingBackend()
    learn = make_learner(seed=0)
    eager = learn.get_preds()[0]
    learn.compile(backend=backend)
    compiled = learn.get_preds()[0]
    # eval mode under inference_mode: forward graphs only, one for the batches of 16 and one
    # (shape-dynamic, torch's automatic dynamic shapes) once the last batch of 8 comes
    assert backend.graphs == 2
    torch.testing.assert_close(compiled, eager)
    assert learn.model.training  # get_preds put train mode back


def test_to_bf16_after_compile():
    """Changing precision after compile recompiles (torch.compile's guards): the compiled
    learner then trains and predicts as the eager one in bf16."""
    backend = CountingBackend()
    learn = make_learner(seed=0).compile(backend=backend)
    learn.fit(1, 1e-2)
    graphs = backend.graphs
    learn.to_bf16()
    learn.fit(1, 1e-2)
    assert backend.graphs > graphs
    compiled = learn.get_preds()[0]
    learn.compile(False)
    torch.testing.assert_close(compiled, learn.get_preds()[0])


def test_channels_last_after_compile():
    """Layout too: to_channels_last (and to_bf16) after compile, before the first fit."""
    backend = CountingBackend()
    learn = make_learner(seed=0).compile(backend=backend)
    eager = learn.model(torch.randn(2, 3, 8, 8)).shape
    learn.to_bf16().to_channels_last()
    learn.fit(1, 1e-2)
    assert backend.graphs >= 2 and eager == (2, 2)
    compiled = learn.get_preds()[0]
    learn.compile(False)
    torch.testing.assert_close(compiled, learn.get_preds()[0])


def test_compile_false_restores_eager():
    backend = CountingBackend()
    learn = make_learner(seed=0).compile(backend=backend)
    assert learn.compile(False) is learn and learn.compiled is None
    learn.fit(1, 1e-2)
    learn.get_preds()
    assert backend.graphs == 0


def test_every_learner_of_a_process_compiles():
    """torch keeps 8 compiled variants for all models of a process together (3 per learner
    here: training, eval, eval of the last smaller batch) and runs eagerly beyond; compile()
    empties that cache, so the fourth learner of a session is compiled too."""
    for _ in range(4):
        backend = CountingBackend()
        learn = make_learner(seed=0).compile(backend=backend)
        learn.fit(1, 1e-2)
        assert backend.graphs == 3


def test_hooks_added_and_removed_after_compile():
    """torch.compile does not guard on module hooks; the learner's compiled forward sees a
    hook added after compiling, and stops calling it once removed."""
    learn = make_learner(seed=0).compile(backend=CountingBackend())
    learn.get_preds()
    seen = []
    handle = learn.model[2].register_forward_hook(lambda m, i, out: seen.append(out.shape))
    learn.get_preds()
    assert [s[0] for s in seen] == [16, 16, 8]
    handle.remove()
    learn.get_preds()
    assert len(seen) == 3


def test_lr_find_under_compile_restores_the_learner():
    backend = CountingBackend()
    learn = make_learner(seed=0).compile(backend=backend)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.lr_find(num_it=10)
    assert backend.graphs >= 1
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_freeze_unfreeze_after_compile():
    backend = CountingBackend()
    learn = make_learner(seed=0).compile(backend=backend)
    learn.freeze()
    conv = learn.model[0]
    frozen = conv.weight.detach().clone()
    learn.fit(1, 1e-2)
    assert torch.equal(conv.weight, frozen)
    learn.unfreeze()
    learn.fit(1, 1e-2)
    assert not torch.equal(conv.weight, frozen)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"mode": 3}, TypeError, "mode"),
        ({"mode": "fastest"}, ValueError, "mode"),
        ({"fullgraph": "yes"}, TypeError, "fullgraph"),
        ({"dynamic": 1}, TypeError, "dynamic"),
        ({"backend": 3}, TypeError, "backend"),
        ({"backend": "no-such-backend"}, ValueError, "backend"),
        ({"options": ["max_autotune"]}, TypeError, "options"),
        ({"mode": "default", "options": {}}, ValueError, "options"),
        ({"options": {"no_such_option": 1}}, ValueError, "no_such_option"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    learn = make_learner()
    with pytest.raises(error, match=name):
        learn.compile(**kwargs)
    assert learn.compiled is None


def test_unsupported_python(monkeypatch):
    """torch.compile refuses some Python versions and builds: the cause and the way out."""

    def unsupported():
        raise RuntimeError("Python 3.15+ not yet supported for torch.compile")

    monkeypatch.setattr(torch._dynamo.eval_frame, "check_if_dynamo_supported", unsupported)
    learn = make_learner()
    with pytest.raises(CompileError, match=r"Python 3\.15.*without\s+learn\.compile\(\)"):
        learn.compile()
    assert learn.compiled is None


def test_no_cxx_compiler():
    """Inductor compiles C++ for the CPU: without a compiler, learn.compile says so."""
    learn = make_learner()
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",)}):
        with pytest.raises(CompileError, match=r"C\+\+ compiler.*learn\.compile\(False\)"):
            learn.compile()
        learn.compile(backend=CountingBackend())  # other backends need no compiler
    assert torch._inductor.config.cpp.cxx != ("/nonexistent/g++",)


def test_backend_failure_at_first_forward():
    """A backend that fails on the model: the error says so at the first forward pass, and
    compile(False) gets the learner going again."""

    def broken(gm, example_inputs):
        raise NotImplementedError("this backend cannot compile conv2d")

    learn = make_learner().compile(backend=broken)
    with pytest.raises(CompileError, match=r"cannot compile conv2d.*learn\.compile\(False\)"):
        learn.fit(1, 1e-2)
    learn.compile(False).fit(1, 1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_reduce_overhead_fit_on_cuda():
    """CUDA graphs (mode="reduce-overhead"): a fit with metrics and get_preds, whose
    outputs are kept across batches, match the eager fit. The tolerance is inductor's on
    the CPU test above (TF32 is off by default for matmuls; cuDNN's algorithm choice may
    differ between the two runs)."""
    from fakes import easy_bunch

    from fastcore_ext.metrics import error_rate

    def run(compiled):
        learn = make_learner(seed=0, data=easy_bunch(device="cuda"), metrics=error_rate)
        if compiled:
            learn.compile("reduce-overhead")
        learn.fit_one_cycle(2, 1e-2)
        rec = learn.recorder
        return torch.tensor(rec.raw_losses), torch.tensor(rec.valid_losses), learn.get_preds()[0]

    tol = {"rtol": 1e-3, "atol": 1e-5}
    with torch._inductor.config.patch(fallback_random=True):
        compiled = run(True)
    for got, want in zip(compiled, run(False), strict=True):
        torch.testing.assert_close(got, want, **tol)
