"""The runtime layer that training, inference and explanation sit on: the device, the fast path
(precision, memory format, threads), how a batch is prepared and run, and progress output.

It imports nothing from training, inference or explain (tests/test_structure.py checks).
"""
