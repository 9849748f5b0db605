"""Pretrained weights, offline-friendly: where torchvision caches them, and one clear error
when they are neither cached nor downloadable."""

from __future__ import annotations

from pathlib import Path

from alexnet_course import CourseError


class WeightsError(CourseError):
    """Pretrained weights are missing or unreadable; the message says where to put them."""


def cached_path(weights) -> Path:
    """Where torch.hub keeps ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def ensure_weights(weights, download: bool = True) -> Path:
    """Return the cached weights file, downloading it (hash-checked) when allowed.

    Raises:
        WeightsError: one line naming the file, where it was looked for, and how to get it.
    """
    import torch

    path = cached_path(weights)
    if not path.is_file():
        how = (f"download {weights.url} on a machine with internet and copy it to {path} "
               "(or point $TORCH_HOME at a folder holding hub/checkpoints/" + path.name + ")")
        if not download:
            raise WeightsError(f"pretrained weights {path.name} not found at {path}; {how}")
        try:
            torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True,
                                               map_location="cpu")  # fmt: skip
        except Exception as e:  # network errors come in many types
            raise WeightsError(f"pretrained weights {path.name} are not cached at {path} and "
                               f"could not be downloaded ({type(e).__name__}); {how}") from None
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic != b"PK":  # torch.save writes a zip archive
        raise WeightsError(f"{path} is not a PyTorch weights file (corrupt or truncated); "
                           f"delete it and download {weights.url} again")  # fmt: skip
    return path
