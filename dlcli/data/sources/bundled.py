"""The datasets that ship with scikit-learn: digits, iris, wine, breast_cancer (classes)
and diabetes (a regression target). Offline, always there: dlcli's default data."""

from __future__ import annotations

from dlcli.config.sources import SKLEARN_SOURCES
from dlcli.data.sources.base import Loaded, Source, plain


class Bundled(Source):
    names = SKLEARN_SOURCES
    regression = ("diabetes",)

    def load(self, config) -> Loaded:
        import sklearn.datasets

        name = config.data.source
        bunch = getattr(sklearn.datasets, f"load_{name}")()
        labels = [plain(v) for v in bunch.target_names] if "target_names" in bunch else None
        return Loaded(
            x=bunch.data.astype("float32"),
            y=bunch.target,
            feature_names=[str(n) for n in bunch.feature_names],
            labels=labels,
            task="regression" if name in self.regression else "classification",
        )
