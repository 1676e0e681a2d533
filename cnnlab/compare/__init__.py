"""`cnnlab compare`'s harness: every road to a classifier on identical splits. It sits above
training and inference (it trains scratch and fine-tuned models), below the commands: runner.py
(splits, resuming), pipelines.py (the registry of roads), training.py (in-memory training through
cnnlab.training), outputs.py (statistics, JSON/CSV/PNG, and `read_comparison` for the report)."""
