"""SIGINT / SIGTERM (Ctrl-C, a scheduler's stop) caught for a block, so that a long run can save
its work before it exits with 128 + the signal, as a shell reports it."""
import contextlib
import signal
import threading


class _Stop(BaseException):
    """Raised in the block by a signal when `interrupt` is set; the block swallows it."""


class StopSignals:
    """Within the block, the first SIGINT / SIGTERM is kept in `signum` (0: none) instead of
    killing the process. interrupt=False: the code checks `signum` where it can stop cleanly (a
    trainer after its step); interrupt=True: the block ends at the next Python instruction
    (nothing half-done to finish first). Main thread only; handlers restored on exit."""

    def __init__(self, interrupt: bool = False):
        self.interrupt, self.signum, self.previous, self.holding = interrupt, 0, {}, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._received)
        return self

    def _received(self, signum, frame):
        if not self.signum:
            self.signum = signum
            if self.interrupt and not self.holding:
                raise _Stop()

    @contextlib.contextmanager
    def held(self):
        """A block a stop does not cut short (starting a process the run must kill when it stops:
        cut inside Popen, the process would run on unseen); a signal received meanwhile stops the
        block's caller when the block ends."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.signum and self.interrupt:
            raise _Stop()

    def __exit__(self, kind, value, tb):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return kind is _Stop
