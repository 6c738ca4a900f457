"""Data sources: one small interface, one module per kind, one table that names them.

A `Source` reads what its config names into `Loaded`: features and targets, its own test
set when it has one, feature names, labels and the files it read (with SHA-256). Turning
that into seeded train / validation / test splits is `dlcli.data.dataset`'s work, and nothing after
it sees a source. Like Keras's data adapters (`keras/src/trainers/data_adapters/`), the
interface is small on purpose. A file source that streams (`data.streaming`, decided by
`dlcli.data.sources.datafile.streams`) returns its features through the same `load`, as `Rows` read
a piece at a time instead of an array, and the model and training code never learn the
difference.

Adding a source: its name in the schema's `data.source` choices (`dlcli.config.schema`), a module
here with a `Source` subclass whose `names` are those, and the source in `_sources` below
(`SOURCES` names them all); a test checks that every schema name has a source.

Example:
    >>> config = load_config({"data": {"source": "iris"}, "model": {"layers": [{"type": "Dense"}]}})
    >>> loaded = source_for("iris").load(config)
    >>> loaded.x.shape, loaded.labels
    ((150, 4), ['setosa', 'versicolor', 'virginica'])
"""

from __future__ import annotations

import functools

from dlcli.data.sources.base import Loaded, Source


@functools.cache
def _sources() -> dict[str, Source]:
    # Built on first use: the modules below import the config schema, which a module that
    # only needs `dlcli.data.sources.datafile` (a served table's reader) should not pay for.
    from dlcli.data.sources.bundled import Bundled
    from dlcli.data.sources.keras_datasets import KerasDataset
    from dlcli.data.sources.media import MediaSource
    from dlcli.data.sources.npzfile import NpzFile
    from dlcli.data.sources.table import TableSource

    return {
        name: source
        for source in (Bundled(), KerasDataset(), TableSource(), NpzFile(), MediaSource())
        for name in source.names
    }


def source_for(name: str) -> Source:
    """The source that reads `data.source: name` (the schema has checked the name)."""
    return _sources()[name]


def __getattr__(name: str):
    if name == "SOURCES":  # every source by the names it reads
        return _sources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOURCES", "Loaded", "Source", "source_for"]
