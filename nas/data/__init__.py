"""Image data for proxy tasks: the `data:` section, one reader per kind, splits, batches.

`load_data` (splits.py) turns a `DataConfig` (config.py) into train / validation /
test `ImageSet`s through the reader of `data.kind` (npz.py, cifar10.py,
imagefolder.py, synthetic.py); batches.py feeds the trainer. Pickled batches are
read only through unpickle.py, archives fetched only through download.py.
"""

from nas.data.batches import augment_batch, batches, normalize
from nas.data.cifar10 import CIFAR10_FOLDER
from nas.data.config import DataConfig, SyntheticConfig
from nas.data.splits import ImageSet, Splits, class_count, load_data, load_whole
from nas.data.synthetic import make_synthetic
from nas.data.unpickle import restricted_unpickle

__all__ = ["CIFAR10_FOLDER", "DataConfig", "ImageSet", "Splits", "SyntheticConfig",
           "augment_batch", "batches", "class_count", "load_data", "load_whole",
           "make_synthetic", "normalize", "restricted_unpickle"]
