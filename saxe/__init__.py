"""saxe: deep linear networks in torch — the Neuromatch tutorial's data, models, training and probes.

See :mod:`theory` for the exact learning dynamics these networks follow.
"""
from .csvdata import DataFileError, ItemsTable, load_items_csv
from .data import FEATURE_NAMES, ITEM_NAMES, add_feature, as_generator, build_tree, generate_hsd, sample_from_tree
from .engines import LOSS_DIVERGENCE_FACTOR
from .errors import DivergenceError
from .models import DeepLNNet, LNNet, LRNet, balanced_init_, decoupled_init_, initializer_, make_net, w_tot, weights
from .probes import net_rsm, net_svd
from .regression import linear_regression
from .train import ENGINES, TrainRecord, train

__version__ = "0.1.0"

__all__ = [
    "LOSS_DIVERGENCE_FACTOR", "DataFileError", "ItemsTable", "load_items_csv", "ENGINES", "FEATURE_NAMES",
    "ITEM_NAMES", "DeepLNNet", "DivergenceError", "LNNet", "LRNet",
    "TrainRecord", "add_feature", "as_generator", "balanced_init_", "build_tree", "decoupled_init_", "generate_hsd",
    "initializer_",
    "linear_regression", "make_net", "net_rsm", "net_svd", "sample_from_tree", "train", "w_tot", "weights",
]
