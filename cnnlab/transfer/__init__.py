"""Transfer learning and the classic pipelines: backbones, fine-tuning, classical features."""
