"""Where a model runs, one list for all: the pipeline's `device` setting and the `--device` of predict and serve.

auto is CUDA where there is a GPU (for ONNX Runtime: where it has its CUDA provider), else the CPU.
"""

DEVICES = ("auto", "cpu", "cuda")
