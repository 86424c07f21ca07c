"""Built-in image classification cards (ImageNet-1k models and the demo classifier).

Preprocessing follows each model's published eval transform: torchvision's ``Resize(256)`` +
``CenterCrop(224)`` with bilinear interpolation, timm's ``crop_pct`` with its interpolation.
``reference`` holds the published ImageNet-1k val top-1 of those weights, for comparison in reports.
"""

from __future__ import annotations

from tritonkit.cards import IMAGENET_MEAN, IMAGENET_STD, ModelCard, Preprocess, TensorSpec
from tritonkit.tasks.classify.math import SoftmaxTopK


def _imagenet(name: str, arch: str, weights_file: str | None, top1: float | None, *, crop: int = 224,
              resize: int = 256, interpolation: str = "bilinear", description: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        task="classify",
        arch=arch,
        input=TensorSpec("input", (3, crop, crop)),
        outputs=(TensorSpec("logits", (1000,)),),
        preprocess=Preprocess("resize_crop", size=crop, resize=resize, mean=IMAGENET_MEAN,
                              std=IMAGENET_STD, interpolation=interpolation),
        postprocess=SoftmaxTopK(),
        labels="imagenet1k",
        num_classes=1000,
        max_batch_size=32,
        weights_file=weights_file,
        reference={"imagenet1k-val": {"top1": top1}} if top1 is not None else {},
        description=description,
    )


CARDS = (
    _imagenet("resnet50", "torchvision:resnet50", "resnet50-0676ba61.pth", 0.76130,
              description="torchvision ResNet-50, IMAGENET1K_V1 weights"),
    # timm's gluon_resnet50_v1b is the ResNet-50 v1b layout with torchvision's parameter names;
    # timm evaluates it with crop_pct 0.875 and bicubic interpolation.
    _imagenet("gluon_resnet50_v1b", "timm:gluon_resnet50_v1b", "gluon_resnet50_v1b-0ebe02e2.pth", 0.77578,
              interpolation="bicubic", description="timm gluon_resnet50_v1b (GluonCV weights)"),
    _imagenet("resnet18", "torchvision:resnet18", "resnet18-f37072fd.pth", 0.69758),
    _imagenet("alexnet", "torchvision:alexnet", "alexnet-owt-7be5be79.pth", 0.56522),
    _imagenet("squeezenet1_0", "torchvision:squeezenet1_0", "squeezenet1_0-b66bff10.pth", 0.58092),
    _imagenet("squeezenet1_1", "torchvision:squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 0.58178),
    _imagenet("vgg11", "torchvision:vgg11", "vgg11-8a719046.pth", 0.69020),
    _imagenet("vgg13", "torchvision:vgg13", "vgg13-19584684.pth", 0.69928),
    _imagenet("vgg16", "torchvision:vgg16", "vgg16-397923af.pth", 0.71592),
    _imagenet("vgg19", "torchvision:vgg19", "vgg19-dcbb9e9d.pth", 0.72376),
    # Darknet-53 at 256 as the seed table gives it: resize the shorter side to 256, center-crop 256,
    # bilinear. Export needs timm or a user ONNX.
    _imagenet("darknet53", "timm:darknet53", "darknet53_256_c2ns-3aeff817.pth", 0.80532, crop=256, resize=256,
              description="Darknet-53 (timm cspnet darknet53), 256x256"),
    # The embedded demo's classifier: trained here on generated shapes (see tritonkit.demo).
    ModelCard(
        name="demo_shapes",
        task="classify",
        arch="demo:shapes_cnn",
        input=TensorSpec("input", (3, 64, 64)),
        outputs=(TensorSpec("logits", (8,)),),
        preprocess=Preprocess("resize_crop", size=64, resize=72, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        postprocess=SoftmaxTopK(),
        labels="demo_shapes",
        num_classes=8,
        max_batch_size=64,
        description="small CNN trained on the generated shapes set (make demo)",
    ),
)
