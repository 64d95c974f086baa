"""Preemption: clusters stop jobs with SIGTERM (and people with Ctrl-C, SIGINT) and a grace period. While training,
either signal only asks the run to stop: the current step finishes, the loop writes a checkpoint and exits with a
message saying how to resume (`pvt_hf.training.Progress`); in a distributed run the processes agree on that step
(`pvt_hf.lockstep.any_process`), so one signal reaching any of them stops all of them after the same step, with one
checkpoint. A second SIGINT interrupts at once."""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
    """Records the first SIGTERM / SIGINT (`received`: its name) between `install()` and `restore()`.

    Data-loader workers forked meanwhile inherit the handler, so a signal sent to the whole process group does not
    end them before the checkpoint is written."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
            return
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number, frame) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name


def resume_hint(received: str, step: int, checkpoint) -> str:
    return (
        f"{received} received: stopped after training step {step} and saved the checkpoint {checkpoint}. "
        "Run the same command with --resume_from_checkpoint latest to continue exactly from there."
    )
