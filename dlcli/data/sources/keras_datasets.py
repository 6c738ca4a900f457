"""`keras.datasets`: mnist, fashion_mnist, cifar10, cifar100, downloaded once and cached
by Keras (under KERAS_HOME). Offline with no cached copy is a ConfigError saying where to
put the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.config.sources import KERAS_SOURCES
from dlcli.data.sources.base import Loaded, Source
from dlcli.errors import ConfigError, Problem


class KerasDataset(Source):
    names = KERAS_SOURCES

    def load(self, config) -> Loaded:
        from dlcli.runtime.keras_import import keras_module

        keras = keras_module()
        name = config.data.source
        try:
            (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # noqa: BLE001 - get_file raises plain Exception when offline
            cache = (
                Path(
                    keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras"
                )
                / "datasets"
            )
            raise ConfigError(
                Problem(
                    f"data.source '{name}' could not be downloaded and no usable copy is cached "
                    f"in {cache} ({type(exc).__name__}); connect once to the network, or copy the "
                    "dataset file into that folder (KERAS_HOME moves it)",
                    where=config.where(("data", "source")),
                )
            ) from None
        return Loaded(
            x=x_train.astype("float32"),
            y=_column(y_train),
            x_test=x_test.astype("float32"),
            y_test=_column(y_test),
            task="classification",
        )


def _column(y) -> np.ndarray:
    """Labels as one value per sample (cifar's are a column)."""
    return np.asarray(y).reshape(len(y), -1).squeeze(-1)
