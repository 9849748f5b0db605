"""One owner for an arm's checkpoints (timm's ``CheckpointSaver``): the last epoch's state
for ``--resume`` and the best validation epoch's weights, each written to a temporary file
and then moved into place, so an interrupted write never leaves a broken checkpoint.

* PyTorch: ``checkpoint.pt`` holds the epoch, the model, optimizer and scheduler states, the
  random state, the history and the best epoch's weights.
* Keras: ``checkpoint.weights.h5`` (the last epoch's weights), ``best.weights.h5`` and
  ``checkpoint.json`` (the epoch, the history, the best accuracy).

A finished arm's checkpoints serve no resume: :meth:`CheckpointSaver.prune` removes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alexnet_course import CourseError

FILES = ("checkpoint.pt", "checkpoint.weights.h5", "best.weights.h5", "checkpoint.json",
         "checkpoint.tmp", "checkpoint.tmp.weights.h5", "best.tmp.weights.h5",
         "checkpoint.json.tmp")  # fmt: skip


class CheckpointSaver:
    """The checkpoints of one arm in ``folder``; ``enabled`` False keeps nothing on disk."""

    def __init__(self, folder: Path, enabled: bool = True, writer: bool = True) -> None:
        self.folder, self.enabled, self.writer = folder, enabled, writer

    def _write(self) -> bool:
        return self.enabled and self.writer

    # ------------------------------------------------------------ PyTorch
    def save_torch(self, state: dict) -> None:
        """Write ``state`` (see the module docstring) as the last checkpoint."""
        if not self._write():
            return
        import torch

        path = self.folder / "checkpoint.pt"
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def load_torch(self, device, epochs: int) -> dict | None:
        """The last checkpoint, or ``None`` when there is none; one written for another
        number of epochs is refused with one line."""
        path = self.folder / "checkpoint.pt"
        if not path.is_file():
            return None
        import torch

        state = torch.load(path, map_location=device, weights_only=False)
        if state.get("epochs") != epochs:
            raise CourseError(f"{path} was written by a {state.get('epochs')}-epoch run; resume "
                              f"with --epochs {state.get('epochs')} (or start afresh without "
                              "--resume)")  # fmt: skip
        return state

    # ------------------------------------------------------------ Keras
    def save_keras(self, model: Any, epoch: int, history: dict, best: float, is_best: bool) -> None:
        """The best epoch's weights when ``is_best`` (always: on disk, not a second copy in
        memory), and with checkpoints the last epoch's weights and state."""
        if is_best and self.writer:
            self._keras_weights(model, "best")
        if not self._write():
            return
        self._keras_weights(model, "checkpoint")
        state = self.folder / "checkpoint.json"
        state.with_suffix(".json.tmp").write_text(json.dumps({"epoch": epoch, "history": history,
                                                              "best": best}))  # fmt: skip
        state.with_suffix(".json.tmp").replace(state)

    def _keras_weights(self, model: Any, name: str) -> None:
        tmp = self.folder / f"{name}.tmp.weights.h5"  # Keras wants the .weights.h5 suffix
        model.save_weights(tmp)
        tmp.replace(self.folder / f"{name}.weights.h5")

    def load_keras(self, model: Any) -> dict | None:
        """Load the last epoch's weights into ``model``; its state, or ``None``."""
        state = self.folder / "checkpoint.json"
        if not state.is_file():
            return None
        model.load_weights(self.folder / "checkpoint.weights.h5")
        return json.loads(state.read_text())

    def load_keras_best(self, model: Any) -> None:
        model.load_weights(self.folder / "best.weights.h5")

    # ------------------------------------------------------------ both
    def exists(self) -> bool:
        return any((self.folder / n).exists() for n in FILES)

    def prune(self) -> None:
        """Remove every checkpoint file (a finished arm's, or before a fresh start)."""
        for name in FILES:
            (self.folder / name).unlink(missing_ok=True)
