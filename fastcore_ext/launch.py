"""Launching a command in several processes on this machine under torchrun:
`fastcore-ext train --nproc N` calls `launch(N, argv)`.

`python -m fastcore_ext.launch ARGS` is torchrun (``python -m torch.distributed.run ARGS``)
that ends on a Ctrl-C or SIGTERM with one line instead of its agent's traceback.

On several machines, run torchrun on each yourself (see fastcore_ext.distributed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from numbers import Integral, Real

__all__ = ["launch", "launch_command"]


# ---- launching -------------------------------------------------------------------------------
def launch_command(nproc: int, argv: Sequence[str], module: str = "fastcore_ext") -> list[str]:
    """The command `launch` runs: this Python's torchrun (through this module's `main`),
    standalone (one machine), `nproc` processes, each running `python -m <module> <argv...>`."""
    if isinstance(nproc, bool) or not isinstance(nproc, Integral) or nproc < 1:
        raise ValueError(f"nproc should be an int >= 1 (processes on this machine), got {nproc!r}")
    if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv should be a list of str (command line arguments), got {argv!r}")
    if not isinstance(module, str) or not module:
        raise TypeError(f"module should be a module name (str), got {module!r}")
    return [
        sys.executable,
        "-m",
        "fastcore_ext.launch",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        module,
        *argv,
    ]


def launch(
    nproc: int, argv: list[str], module: str = "fastcore_ext", timeout: float | None = None
) -> int:
    """Run `python -m <module> <argv>` in `nproc` processes on this machine under torchrun
    (``torchrun --standalone --nproc-per-node N -m fastcore_ext train ...`` for
    argv = ['train', ...]) and wait. Returns torchrun's exit code: 0 when every process
    succeeded; non-zero when one failed (torchrun then stops the others).

    torchrun runs in a session of its own (and starts each worker in one), so a Ctrl-C in the
    terminal reaches this process alone: it passes SIGINT on to torchrun, which interrupts
    every worker (each ends its fit as after a Ctrl-C: `fastcore_ext.interrupt`, saving what
    it trained) and gives them 30 s; this waits for that, then raises KeyboardInterrupt. A
    second Ctrl-C does not cut the saves short (as in one process: it waits for the save);
    torchrun itself stops the workers after its 30 s.

    timeout: seconds to wait (None: as long as it runs). Past it, torchrun and its workers get
    SIGTERM, then SIGKILL after 10 s, and TimeoutError is raised."""
    cmd = launch_command(nproc, argv, module)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, Real) or not timeout > 0
    ):
        raise ValueError(f"timeout should be a number of seconds > 0 or None, got {timeout!r}")
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_session(proc)
        raise TimeoutError(
            f"launch: {' '.join(cmd)} still ran after timeout={timeout} s; stopped it"
        ) from None
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # torchrun interrupts the workers, waits 30 s
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:  # a second Ctrl-C lost every save: keep waiting
                print(
                    "fastcore-ext: waiting for the processes to save what they trained "
                    "(torchrun stops them after 30 s)",
                    file=sys.stderr,
                    flush=True,
                )
        raise
    except BaseException:
        _stop_session(proc)
        raise


def _stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM to every process of `proc`'s session, SIGKILL to what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---- torchrun, quiet on a signal -------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """torchrun's command line (`torch.distributed.run.main`) on `argv`; its exit status.

    A signal to torchrun (SIGINT from `launch` on a Ctrl-C, SIGTERM from a scheduler) makes
    its agent forward the signal to the workers, wait for them, and then raise
    SignalException, which torchrun prints as a 30-line traceback of its own agent. Here
    that is one line, and the exit status is the shell's for the signal (130 for SIGINT).
    What the workers print (their own Ctrl-C handling) is theirs and unchanged."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun(None if argv is None else list(argv))
    except SignalException as e:
        name = signal.Signals(e.sigval).name
        print(f"fastcore-ext: torchrun stopped the processes on {name}", file=sys.stderr)
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
