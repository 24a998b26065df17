"""`Learner.compile`: the model's forward through `torch.compile`, opt-in.

`compile_forward(model, device, ...)` checks the arguments and that torch.compile can run
here, and returns a `CompiledForward`: `torch.compile(model)` (an OptimizedModule that holds
`model` itself, so parameters, buffers, hooks and the state_dict stay the user's module's)
called through a small wrapper that

- turns a failure of torch.compile's backend at the first call (no C++ compiler for
  inductor, a graph it cannot compile) into a `CompileError` naming the cause and the way
  back (`learn.compile(False)`);
- with CUDA graphs (mode "reduce-overhead" or "max-autotune" on a CUDA device), marks a new
  step before each call and returns a copy of the output: a graph's output lives in memory
  its next replay overwrites, and the loop keeps predictions across batches (metrics,
  get_preds).

Module hooks added or removed after compiling: torch.compile does not see them (it does not
guard on hooks), so the wrapper compiles anew when the model's hooks change.

What is compiled is the model's forward and, through AOTAutograd, its backward; the loss,
the optimizer step (our fused kernel, a launch of its own) and the data pipeline run as
before. Recompilation follows torch.compile's guards: a change of precision (autocast),
memory layout, train/eval mode, grad mode (inference_mode) or requires_grad (freeze /
unfreeze) compiles a new variant on its next call, and so does a batch of another size
(once, with dynamic shapes). torch keeps at most `torch._dynamo.config.recompile_limit`
(8) variants for every compiled module of the process together (they share one wrapper
function) and runs the model eagerly beyond that, with a logged warning only; the third
compiled learner of a process got there in our tests. So `compile_forward` empties that
cache first (`torch.compiler.reset()`); compiled models made before recompile on their next
call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["CompileError", "CompiledForward", "compile_forward"]

_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class CompileError(RuntimeError):
    """torch.compile cannot run here, or its backend failed on the model."""


def _unavailable(cause: str) -> CompileError:
    return CompileError(
        f"learn.compile: torch.compile cannot run here ({cause}). Train without "
        f"learn.compile() (eager, the default), or call learn.compile(False) to go back to it"
    )


def _check_args(
    mode: Any, fullgraph: Any, dynamic: Any, backend: Any, options: Any
) -> str | Callable[..., Any]:
    """TypeError / ValueError naming the argument; returns the backend."""
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"mode should be a str, None, True or False, got {type(mode).__name__}")
    if not isinstance(fullgraph, bool):
        raise TypeError(f"fullgraph should be a bool, got {type(fullgraph).__name__}")
    if dynamic is not None and not isinstance(dynamic, bool):
        raise TypeError(f"dynamic should be a bool or None, got {type(dynamic).__name__}")
    if not (isinstance(backend, str) or callable(backend)):
        raise TypeError(
            f"backend should be a str (torch._dynamo.list_backends()) or a callable, got "
            f"{type(backend).__name__}"
        )
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options should be a dict or None, got {type(options).__name__}")
    if mode is not None and options is not None:
        raise ValueError("mode and options cannot both be given (torch.compile's rule)")
    if mode is not None:
        from torch._inductor import list_mode_options

        modes = list(list_mode_options())
        if mode not in modes:
            raise ValueError(f"mode should be one of {modes}, None or False, got {mode!r}")
    if isinstance(backend, str):
        from torch._dynamo import list_backends

        backends = list_backends(exclude_tags=None)
        if backend not in backends:
            raise ValueError(f"backend should be one of {backends} or a callable, got {backend!r}")
    return backend


def _check_available(backend: str | Callable[..., Any], device: torch.device) -> None:
    """CompileError when torch.compile (or inductor on this device) cannot run here."""
    from torch._dynamo.eval_frame import check_if_dynamo_supported

    try:
        check_if_dynamo_supported()  # Python version / build
    except RuntimeError as e:
        raise _unavailable(str(e)) from e
    if backend != "inductor":
        return
    if device.type == "cpu":  # inductor compiles C++ for the CPU
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler

        try:
            get_cpp_compiler()
        except InvalidCxxCompiler as e:
            raise _unavailable(f"inductor needs a C++ compiler for the CPU: {e}") from e
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise _unavailable("inductor needs Triton for CUDA and it is not installed")


def _cause(e: Exception) -> str:
    """The exception a torch.compile backend raised (its `inner_exception`), else the first
    line of torch's message."""
    inner = getattr(e, "inner_exception", None)
    if isinstance(inner, BaseException):
        return f"{type(inner).__name__}: {inner}"
    lines = [line for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _hook_dicts(model: nn.Module) -> list[dict[int, Any]]:
    """The dicts of every module hook that can run in `model`'s forward or backward, global
    ones included (hooks are added to and removed from these dicts in place)."""
    from torch.nn.modules import module as m

    dicts = [m._global_forward_pre_hooks, m._global_forward_hooks, m._global_backward_hooks]
    dicts.append(m._global_backward_pre_hooks)
    for mod in model.modules():
        dicts += [mod._forward_pre_hooks, mod._forward_hooks, mod._backward_hooks]
        dicts.append(mod._backward_pre_hooks)
    return dicts


def _handles(dicts: list[dict[int, Any]]) -> tuple[int, ...]:
    return tuple(k for d in dicts for k in d)


class CompiledForward:
    """`module`: torch.compile(model, ...); called as the model is, xb -> output.

    torch.compile does not guard on module hooks (torch._dynamo.config
    .skip_nnmodule_hook_guards): code compiled before a hook was added keeps running without
    it (seen with torch 2.14). So each call compares the model's hook handles with those it
    was compiled with (about 20 us for resnet34's 116 modules) and on any change, added or
    removed, empties torch's compile cache and compiles anew."""

    def __init__(
        self, model: nn.Module, device: torch.device, cuda_graphs: bool, **settings: Any
    ) -> None:
        self.settings = settings  # the torch.compile arguments, as given
        self.model = model
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._compile()

    def _compile(self) -> None:
        """torch.compile(model), and the hook handles it is compiled with."""
        self.module = torch.compile(self.model, **self.settings)
        self.hook_dicts = _hook_dicts(self.model)  # (a submodule replaced later: dynamo recompiles)
        self.hooks = _handles(self.hook_dicts)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        from torch._dynamo.exc import TorchDynamoException

        hooks = _handles(self.hook_dicts)
        if hooks != self.hooks:
            torch.compiler.reset()
            self._compile()
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            out = self.module(xb)
        except TorchDynamoException as e:
            raise CompileError(
                f"learn.compile: torch.compile failed on the model ({_cause(e)}). "
                f"learn.compile(False) goes back to the eager model (run it eagerly to see "
                f"whether the model itself fails)"
            ) from e
        return out.clone() if self.cuda_graphs else out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"CompiledForward({args})"


def compile_forward(
    model: nn.Module,
    device: torch.device | str,
    mode: str | None = None,
    fullgraph: bool = False,
    dynamic: bool | None = None,
    backend: str | Callable[..., Any] = "inductor",
    options: dict[str, Any] | None = None,
) -> CompiledForward:
    """What `Learner.compile` sets as `learn.compiled`: `model` through torch.compile with
    these arguments (torch.compile's), after checking them (TypeError / ValueError naming
    the argument) and that torch.compile can run on `device` (CompileError)."""
    backend = _check_args(mode, fullgraph, dynamic, backend, options)
    device = torch.device(device)
    _check_available(backend, device)
    cuda_graphs = mode in _CUDA_GRAPH_MODES or bool((options or {}).get("triton.cudagraphs"))
    settings: dict[str, Any] = {"fullgraph": fullgraph, "dynamic": dynamic, "backend": backend}
    if mode is not None:
        settings["mode"] = mode
    if options is not None:
        settings["options"] = options
    torch.compiler.reset()  # the variants' cache is shared by every compiled model (above)
    try:
        return CompiledForward(model, device, cuda_graphs or backend == "cudagraphs", **settings)
    except RuntimeError as e:  # torch.compile's own checks (an unknown option, ...)
        raise ValueError(f"learn.compile: torch.compile refused the arguments: {e}") from e
