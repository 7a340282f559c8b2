"""A module that holds a computation in a widget's worker until the test lets it go."""

import threading

from torch import nn


class Gate(nn.Module):
    """Identity whose forward waits for the test to open the gate (and fails, never hangs, if it stays shut)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def forward(self, inputs):
        if not self.gate.wait(timeout=30):
            raise RuntimeError("the main thread was blocked")
        return inputs
