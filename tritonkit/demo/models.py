"""The embedded demo's torch models (archs ``demo:shapes_cnn`` and ``demo:shapes_yolo``).

Importing this module imports torch; light modules import it inside functions.

* :class:`ShapesCNN`: four conv stages (conv-BN-ReLU, 2x2 max pool) -> global average pool ->
  linear. Input ``[N, 3, 64, 64]`` normalized as the ``demo_shapes`` card says, output logits.
* :class:`ShapesYOLO`: a small anchor-free detector on a stride-8 grid. Its forward returns the
  ultralytics layout ``[N, cells, 5 + C]``: ``cx, cy, w, h`` in input pixels, objectness and
  class scores after a sigmoid, so the exported ONNX is post-processed by the same YOLO decode
  and NMS as a real YOLOv5. Per cell: ``cx = (2 sigmoid(tx) - 0.5 + col) * stride`` (a cell
  can reach its neighbours' objects, as in YOLOv5) and ``w = (2 sigmoid(tw))^2 * base`` with
  ``base = 3 * stride`` (0 .. 12 strides). :meth:`ShapesYOLO.raw` gives the logits the
  training loss needs; :meth:`ShapesYOLO.decode` is the part of the forward after it.
"""

from __future__ import annotations

import torch
from torch import nn

from tritonkit.errors import CardError


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapesCNN(nn.Module):
    """Small classifier: 3x64x64 -> logits."""

    def __init__(self, num_classes: int = 8, width: int = 24):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w), nn.MaxPool2d(2),                          # 32
            _conv(w, 2 * w), nn.MaxPool2d(2),                      # 16
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), nn.MaxPool2d(2),  # 8
            _conv(4 * w, 8 * w), nn.MaxPool2d(2),                  # 4
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class ShapesYOLO(nn.Module):
    """Small anchor-free detector: 3xSxS -> ``[N, (S/8)^2, 5 + num_classes]`` (ultralytics layout)."""

    stride = 8

    def __init__(self, num_classes: int = 4, input_size: int = 128, width: int = 32):
        super().__init__()
        if input_size % self.stride:
            raise CardError(f"ShapesYOLO: input size {input_size} is not a multiple of stride {self.stride}")
        w = width
        self.num_classes = num_classes
        self.grid_size = input_size // self.stride
        self.base = 3.0 * self.stride
        self.backbone = nn.Sequential(
            _conv(3, w // 2, 2),                     # /2
            _conv(w // 2, w, 2),                     # /4
            _conv(w, 2 * w, 2),                      # /8
            _conv(2 * w, 2 * w),
            _conv(2 * w, 2 * w, dilation=2),
            _conv(2 * w, 2 * w, dilation=4),
        )
        self.head = nn.Conv2d(2 * w, 5 + num_classes, 1)
        g = self.grid_size
        ys, xs = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys], dim=-1).reshape(1, g * g, 2), persistent=False)
        with torch.no_grad():  # start with low objectness everywhere (few cells hold objects)
            self.head.bias[4].fill_(-4.0)
            self.head.bias[5:].fill_(-2.0)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell logits ``[N, cells, 5 + C]`` (row-major cells)."""
        p = self.head(self.backbone(x))
        return p.flatten(2).transpose(1, 2)

    def decode_boxes(self, raw: torch.Tensor) -> torch.Tensor:
        """``cx, cy, w, h`` in input pixels from the first four logits of every cell."""
        xy = (torch.sigmoid(raw[..., 0:2]) * 2.0 - 0.5 + self.grid) * self.stride
        wh = (torch.sigmoid(raw[..., 2:4]) * 2.0) ** 2 * self.base
        return torch.cat([xy, wh], dim=-1)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.decode_boxes(raw), torch.sigmoid(raw[..., 4:])], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.raw(x))


ARCHS = {"shapes_cnn": ShapesCNN, "shapes_yolo": ShapesYOLO}


def build_for_card(card) -> nn.Module:
    """The export builder of the demo archs (registered by :mod:`tritonkit.demo`)."""
    return build(card.arch, card.num_classes, card.preprocess.size)


def build(arch: str, num_classes: int, input_size: int) -> nn.Module:
    """A fresh (randomly initialized) demo model for a card's ``demo:<name>`` arch."""
    name = arch.split(":", 1)[1] if arch.startswith("demo:") else arch
    if name == "shapes_cnn":
        if input_size % 16:
            raise CardError(f"demo:shapes_cnn needs an input size divisible by 16 (got {input_size})")
        return ShapesCNN(num_classes)
    if name == "shapes_yolo":
        return ShapesYOLO(num_classes, input_size)
    raise CardError(f"unknown demo arch {arch!r}; known: {', '.join('demo:' + a for a in ARCHS)}")
