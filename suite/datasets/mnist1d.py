"""MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 classes, generated locally by the `mnist1d` package."""
from __future__ import annotations

import random

import numpy as np

from suite.config import DataConfig
from suite.data import Source, cache_dir, float_source, read_npz, stream_seed
from suite.datasets.base import Dataset
from suite.errors import ConfigError
from suite.results import atomic_write

MNIST1D_SHAPE = (40,)  # one example of MNIST-1D: 40 floats
# mnist1d's get_dataset_args() (0.0.2.post1), without the download url: the dataset this suite means by
# MNIST-1D, and its cache file's name. Written out so that a cached run never imports the package
# (it imports matplotlib, scipy and requests: about a second of every run's start-up).
MNIST1D_ARGS = {"corr_noise_scale": 0.25, "final_seq_length": 40, "iid_noise_scale": 2e-2, "max_translation": 48,
                "num_samples": 5000, "padding": [36, 60], "scale_coeff": 0.4, "seed": 42, "shear_scale": 0.75,
                "shuffle_seq": False, "template_len": 12, "train_split": 0.8}


class Mnist1d(Dataset):
    """The package's default arguments: 4,000 training and 1,000 test signals; never downloaded."""
    name = "mnist1d"

    def known(self, cfg: DataConfig):
        return (1, *MNIST1D_SHAPE), 10, 4_000  # 5,000 examples split 80/20

    def load(self, cfg: DataConfig) -> Source:
        """Generated with the package's default arguments, cached as .npz; standardised with the
        training set's scalar mean and std."""
        path = cache_dir(cfg) / "mnist1d" / f"mnist1d-{stream_seed(MNIST1D_ARGS) % 16**10:010x}.npz"
        arrays = None
        if path.is_file():
            try:  # a cache: a damaged copy is made again, never used
                arrays = read_npz(path, ("x", "y", "x_test", "y_test"), MNIST1D_SHAPE, np.float64)
            except ConfigError:
                arrays = None
        if arrays is None:
            from mnist1d.data import get_dataset_args, make_dataset

            args = get_dataset_args()
            for key, value in MNIST1D_ARGS.items():
                setattr(args, key, value)
            # make_dataset reseeds Python's and NumPy's global RNGs; give the caller theirs back
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                d = make_dataset(args)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)

            def save(tmp) -> None:
                with open(tmp, "wb") as f:  # a file object: given a name, savez would append ".npz"
                    np.savez(f, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
            atomic_write(path, save)
            arrays = read_npz(path, ("x", "y", "x_test", "y_test"), MNIST1D_SHAPE, np.float64)
        x, y, vx, vy = arrays
        mean, std = x.mean(), x.std()
        x, vx = ((a - mean) / std for a in (x, vx))
        return float_source("mnist1d", x[:, None, :], y, vx[:, None, :], vy, 10)
