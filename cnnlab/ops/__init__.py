"""Stateless image operations from the seed slides, on [B, C, H, W] tensors."""
