"""nn.Modules built on torch.nn and cnnlab.ops."""
