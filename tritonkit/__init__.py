"""tritonkit: deploy vision models on Triton Inference Server and measure what you got.

Importing the package is cheap: heavy libraries (torch, tensorrt, tritonclient, onnxruntime)
are imported inside the functions that need them.
"""

__version__ = "0.1.0"
