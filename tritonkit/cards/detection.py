"""Built-in object detection cards.

YOLO cards take the ONNX that ultralytics exports (``export.py --include onnx``): one input
``images`` (letterboxed RGB, pixel/255) and one output ``output0`` of shape
``[N, boxes, 5 + classes]`` holding ``cx, cy, w, h, objectness, class scores`` in input
pixels. The SSD card takes an ONNX with ``boxes`` (normalized x1y1x2y2) and ``scores``
(softmax over background + 80 classes). NMS profiles follow the seed benchmarks: ``speed``
(conf 0.25 / IoU 0.45, best class per box) for timing and ``ap`` (conf 0.001 / IoU 0.65) for
mAP. The ultralytics YOLO cards' ``ap`` is multi-label, as YOLOv5's ``val.py`` (every class
above the threshold is a candidate); the demo detector keeps the single-label ``ap`` so its
numbers stay comparable, and SSD decoding is per class anyway.

The anchor-free cards (``yolov8n``, ``yolo11n``) take ``yolo export format=onnx``'s file: one output
``output0`` ``[N, 4 + 80, 8400]`` at 640 (``cx, cy, w, h`` then the 80 sigmoid class scores, no
objectness) and ultralytics' own NMS settings (IoU 0.7 in both profiles; ``ap`` is its validator's,
``speed`` its predictor's). Their letterbox is the validator's (``letterbox_rule="val"``: the long side
resized with ceil rounding, then padded, no upscaling), so mAP through tritonkit matches ``yolo val``;
a card meant to reproduce ``yolo predict`` pixel for pixel sets ``letterbox_rule="predict"``.
"""

from __future__ import annotations

from tritonkit.cards import (
    NMS_AP, NMS_AP_MULTI, NMS_SPEED, NMS_ULTRALYTICS_AP, NMS_ULTRALYTICS_SPEED, ModelCard, Preprocess, TensorSpec)
from tritonkit.tasks.detect.math import SSDDecode, YoloAnchorFreeDecode, YoloDecode

# COCO's 80 training classes -> the 91-id category space of instances_val2017.json.
COCO80_TO_91 = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)

_YOLO_PRE = dict(mode="letterbox", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad_value=114)


def _yolo(name: str, size: int, boxes: int, map50: float, description: str) -> ModelCard:
    return ModelCard(
        name=name,
        task="detect",
        arch=f"ultralytics:{name}",
        input=TensorSpec("images", (3, size, size)),
        outputs=(TensorSpec("output0", (boxes, 85)),),
        preprocess=Preprocess(size=size, **_YOLO_PRE),
        postprocess=YoloDecode(box_coding="center_size"),  # ultralytics cx, cy, w, h
        labels="coco80",
        num_classes=80,
        max_batch_size=16,
        nms_profiles=(NMS_SPEED, NMS_AP_MULTI),  # ap: multi-label, as YOLOv5 val.py
        category_ids=COCO80_TO_91,
        reference={"coco-val2017": {"map50": map50}},
        description=description,
    )


def _ultralytics_anchor_free(name: str, map50_95: float) -> ModelCard:
    size, anchors = 640, 8400  # 80^2 + 40^2 + 20^2 anchor points at strides 8, 16, 32
    return ModelCard(
        name=name,
        task="detect",
        arch=f"ultralytics:{name}",
        input=TensorSpec("images", (3, size, size)),
        outputs=(TensorSpec("output0", (4 + 80, anchors)),),
        preprocess=Preprocess(size=size, letterbox_rule="val", **_YOLO_PRE),
        postprocess=YoloAnchorFreeDecode(),
        labels="coco80",
        num_classes=80,
        max_batch_size=16,
        nms_profiles=(NMS_ULTRALYTICS_SPEED, NMS_ULTRALYTICS_AP),
        category_ids=COCO80_TO_91,
        reference={"coco-val2017": {"map50_95": map50_95}},
        int8_head="float",  # int8: the box and class convolutions of the head stay float (measured better)
        description=f"ultralytics {name}, 640x640, "
                    f"`yolo export format=onnx` (anchor-free head, validator letterbox)",
    )


CARDS = (
    # boxes = 3 anchors x (80^2 + 40^2 + 20^2) at 640, x (52^2 + 26^2 + 13^2) at 416.
    _yolo("yolov5s", 640, 25200, 0.560, "ultralytics YOLOv5s, 640x640, user-exported ONNX"),
    _yolo("yolov3", 416, 10647, 0.605, "ultralytics YOLOv3, 416x416, user-exported ONNX"),
    # ultralytics' published COCO val2017 mAP50-95 at 640 (docs.ultralytics.com/models/yolov8, /yolo11)
    _ultralytics_anchor_free("yolov8n", 0.373),
    _ultralytics_anchor_free("yolo11n", 0.395),
    ModelCard(
        name="ssd_resnet18",
        task="detect",
        arch="onnx:ssd_resnet18",
        input=TensorSpec("input", (3, 300, 300)),
        outputs=(TensorSpec("boxes", (8732, 4)), TensorSpec("scores", (8732, 81))),
        preprocess=Preprocess("resize", size=300),
        postprocess=SSDDecode(box_coding="corner", background_index=0),  # normalized x1y1x2y2
        labels="coco80",
        num_classes=80,
        max_batch_size=16,
        nms_profiles=(NMS_SPEED, NMS_AP),
        category_ids=COCO80_TO_91,
        description="SSD300 with a ResNet-18 backbone, user-supplied ONNX",
    ),
    # The embedded demo's detector, trained here on generated shapes (see tritonkit.demo).
    # Its ONNX output has the ultralytics layout, so the real YOLO postprocess is exercised.
    ModelCard(
        name="demo_shapes_det",
        task="detect",
        arch="demo:shapes_yolo",
        input=TensorSpec("images", (3, 128, 128)),
        outputs=(TensorSpec("output0", (256, 9)),),
        preprocess=Preprocess(size=128, **_YOLO_PRE),
        postprocess=YoloDecode(),
        labels="demo_shapes_det",
        num_classes=4,
        max_batch_size=64,
        nms_profiles=(NMS_SPEED, NMS_AP),
        category_ids=(1, 2, 3, 4),
        description="small anchor-free detector trained on generated shapes (make demo)",
    ),
)
