"""Plain data that describes what to build and how to train it, importable without torch so the
command line can show it at once: the network spec grammar, activation names, augmentation
settings and the per-data-set recipes. The modules that act on them (models, ops, data, training)
read these; nothing here is a second list of them.
"""
