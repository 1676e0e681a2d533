"""The run directory, the contract between stages: the only code that reads or writes its files.

`RunDir` knows the paths, the typed records (config.json, dataset.json, model.json) and the
metrics log; `checkpoints` the weights and training state; `load_run` rebuilds a trained model.
"""

from cnnlab.run.paths import RunDir
from cnnlab.run.records import ConfigRecord, DatasetRecord, ModelRecord, Normalization, RecordError

__all__ = [
    "ConfigRecord",
    "DatasetRecord",
    "ModelRecord",
    "Normalization",
    "RecordError",
    "RunDir",
]
