"""Checking and tuning the training process: sanity checks (check.py), the learning-rate range
test (lr_find.py) and hyper-parameter search on Optuna (search.py)."""
