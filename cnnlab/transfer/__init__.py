"""Transfer learning and the classic pipelines: pretrained backbones, fine-tuning, hand-crafted features, classical classifiers."""
