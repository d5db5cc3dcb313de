"""mpdit.signals.StopSignals: a stop cuts the block short, except inside held(), which finishes
first (a bench starting a case's process must get the process, to kill it with the run)."""
import os
import signal
import time

from mpdit.signals import StopSignals


def wait_for_the_handler(stop):
    deadline = time.monotonic() + 5
    while not stop.signum and time.monotonic() < deadline:  # the handler runs between these instructions
        time.sleep(0.01)
    time.sleep(0.05)  # and a stop not held would have ended the block by now


def test_a_stop_inside_held_ends_the_block_only_when_held_ends():
    done = []
    with StopSignals(interrupt=True) as stop:
        with stop.held():
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for_the_handler(stop)
            done.append("held block finished")
        done.append("after the held block")  # not reached: the stop ends the block here
    assert done == ["held block finished"] and stop.signum == signal.SIGTERM


def test_a_stop_outside_held_ends_the_block_at_once():
    before, done = signal.getsignal(signal.SIGTERM), []
    with StopSignals(interrupt=True) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for_the_handler(stop)
        done.append("not reached")
    assert done == [] and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler restored
