"""The runtime layer that training, inference and explanation sit on: the device, the fast path
(precision, memory format, threads), how a batch is prepared and run, and progress output.

It imports nothing from training, inference or explain (tests/test_structure.py checks); this
file imports nothing at all, so the command line can show its choices without torch.
"""

RUNTIMES = ("torch", "onnx")  # what runs a trained model: PyTorch, or ONNX Runtime on the CPU
# Test-time augmentation (runtime/predict.py): logits averaged over the image and its mirror, and
# with flip-shift also over both copies shifted one pixel diagonally (each with its mirror).
TTA_CHOICES = ("none", "flip", "flip-shift")
