"""Built-in semantic segmentation cards (PASCAL VOC's 21 classes, and the demo segmenter).

Preprocessing is torchvision's reference eval transform (``SemanticSegmentation(resize_size=520)``):
the shorter side resized to 520 (bilinear), no crop, ImageNet mean/std. The input's height and
width therefore vary from image to image: the input dims are ``[3, -1, -1]``, the output
``[C, -1, -1]`` (logits at input size; torchvision's models upsample to it), and
``dynamic_shape`` gives the ``[H, W]`` range a TensorRT profile is built for. Images whose
longer side at a shorter side of 520 exceeds ``max`` (aspect above 2) need a card with a larger
``max`` for TensorRT; the CPU target takes any size.

Weights are the user's files: torchvision's ``COCO_WITH_VOC_LABELS_V1`` checkpoints (their
``aux_classifier.*`` weights are accepted and dropped at export, with a note in the sidecar).
``reference`` holds the published numbers as ``{dataset: {metric: value}}`` (fractions):
torchvision's documented mIoU / pixel accuracy on COCO val2017 restricted to the VOC classes,
and seed 003's 64.2 mIoU (PyTorch, VOC2012 val) for DeepLabV3 on ResNet-18.
"""

from __future__ import annotations

from tritonkit.cards import IMAGENET_MEAN, IMAGENET_STD, ModelCard, Preprocess, SpatialRange, TensorSpec
from tritonkit.tasks.segment.math import ArgmaxMask

VOC_RESIZE = 520
COCO_VOC = "coco-val2017-voc-labels"   # torchvision's evaluation set for these weights
VOC_VAL = "voc2012-val"
_VOC_RANGE = SpatialRange(min=(VOC_RESIZE, VOC_RESIZE), opt=(VOC_RESIZE, 693), max=(1040, 1040))


def _voc(name: str, arch: str, weights_file: str | None, reference: dict, description: str) -> ModelCard:
    return ModelCard(
        name=name,
        task="segment",
        arch=arch,
        input=TensorSpec("input", (3, -1, -1)),
        outputs=(TensorSpec("out", (21, -1, -1)),),
        preprocess=Preprocess("resize_short", size=VOC_RESIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        postprocess=ArgmaxMask(),
        labels="voc21",
        num_classes=21,
        max_batch_size=8,
        dynamic_shape=_VOC_RANGE,
        weights_file=weights_file,
        reference=reference,
        description=description,
    )


CARDS = (
    _voc("deeplabv3_resnet18", "tritonkit:deeplabv3_resnet18", None, {VOC_VAL: {"miou": 0.642}},
         "DeepLabV3 head (torchvision DeepLabHead) on a ResNet-18 backbone (layer4 features, output "
         "stride 32), 21 VOC classes; weights from the user's state dict"),
    _voc("deeplabv3_resnet50", "torchvision:deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth",
         {COCO_VOC: {"miou": 0.664, "pixel_accuracy": 0.924}}, "torchvision DeepLabV3-ResNet50, COCO_WITH_VOC_LABELS_V1"),
    _voc("fcn_resnet50", "torchvision:fcn_resnet50", "fcn_resnet50_coco-1167a1af.pth",
         {COCO_VOC: {"miou": 0.605, "pixel_accuracy": 0.914}}, "torchvision FCN-ResNet50, COCO_WITH_VOC_LABELS_V1"),
    _voc("lraspp_mobilenet_v3_large", "torchvision:lraspp_mobilenet_v3_large",
         "lraspp_mobilenet_v3_large-d234d4ea.pth", {COCO_VOC: {"miou": 0.579, "pixel_accuracy": 0.912}},
         "torchvision LR-ASPP MobileNetV3-Large, COCO_WITH_VOC_LABELS_V1"),
    # The embedded demo's segmenter, trained here on generated shapes (tritonkit.demo.train_seg).
    ModelCard(
        name="demo_seg",
        task="segment",
        arch="demo:shapes_segnet",
        input=TensorSpec("input", (3, -1, -1)),
        outputs=(TensorSpec("out", (5, -1, -1)),),
        preprocess=Preprocess("resize_short", size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        postprocess=ArgmaxMask(),
        labels="demo_seg",
        num_classes=5,
        max_batch_size=16,
        dynamic_shape=SpatialRange(min=(64, 64), opt=(64, 85), max=(128, 128)),
        description="small fully convolutional segmenter trained on the generated shapes set (make demo)",
    ),
)
