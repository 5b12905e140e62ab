"""Shared helpers for the zoo model definitions."""
from dataclasses import dataclass, field
from typing import Callable, Tuple

import torch.nn as nn


@dataclass
class ModelSpec:
    model_id: str                       # e.g. "seed000_cbam_fc_k7"
    seed: str                           # "000" .. "004"
    description: str
    build: Callable[[bool], nn.Module]  # build(full) -> module
    shape: Tuple[int, ...]              # input shape (batch 2) for Models/
    full_shape: Tuple[int, ...] = None  # input shape for --full (defaults to shape)
    deep: bool = False                  # deep network: looser tolerance
    note: str = ""                      # free text copied to the manifest
    full_note: str = ""

    def input_shape(self, full: bool):
        return tuple(self.full_shape or self.shape) if full else tuple(self.shape)


def hidden(channels: int, ratio) -> int:
    """Bottleneck width of a reduction MLP, never below 1."""
    return max(int(channels // ratio), 1)
