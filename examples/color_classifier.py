"""The README's own-model example: a tiny PyTorch classifier exported to ONNX.

It stands in for your trained model, with handcrafted weights instead of training: three 3x3
convolutions (about 45 M multiply-adds per image, so the server has real work to do) that blur
each colour channel, a global average pool and a linear layer, which together call an image
red, green or blue from its mean colour, on inputs normalised as (x - 127) / 128.
The export is the call that works with the pinned torch: the default (dynamo) exporter, which
needs the ``onnxscript`` package (in requirements.txt), with the card's tensor names and a
dynamic batch axis. Without onnxscript, pass ``dynamo=False`` and ``dynamic_axes`` instead
(see ``export_legacy``).

    python examples/color_classifier.py build/color_classifier.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


WIDTH = 24  # feature channels; channel k carries colour k % 3


class ColorNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.Sequential(*(torch.nn.Conv2d(3 if i == 0 else WIDTH, WIDTH, 3, padding=1)
                                           for i in range(3)))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(WIDTH, 3)
        score = torch.tensor([[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0], [-2.0, -2.0, 4.0]])  # one colour minus the others
        with torch.no_grad():
            for i, conv in enumerate(self.convs):  # a 3x3 blur of channel k % 3 (first) or k (later)
                conv.weight.zero_()
                conv.bias.zero_()
                for k in range(WIDTH):
                    conv.weight[k, k % 3 if i == 0 else k] = 1.0 / 9.0
            self.fc.weight.copy_(score[:, torch.arange(WIDTH) % 3] / (WIDTH // 3))
            self.fc.bias.zero_()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.convs(image)).flatten(1))


def export(path: Path) -> Path:
    """The default exporter (dynamo, needs onnxscript): names from the card, a dynamic batch
    axis, the weights inside the file."""
    model = ColorNet().eval()
    example = torch.zeros(1, 3, 64, 64)
    torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["scores"],
                      dynamic_shapes={"image": {0: torch.export.Dim("batch", max=1024)}},
                      external_data=False)  # one file: the weights inside, not beside it in .onnx.data
    return path


def export_legacy(path: Path) -> Path:
    """The TorchScript exporter (no onnxscript needed)."""
    model = ColorNet().eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["image"],
                      output_names=["scores"], dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/color_classifier.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(export(out))
