"""Stage 2, the runtime: which Keras backend, which devices, which precision and compile
settings a run gets, and the process-wide switches that make them so.

- `keras_import`: starting Keras on a backend (quietly, with the CPU split into devices).
- `backend`: `runtime.backend: auto`, the rule that picks the fastest installed backend.
- `devices`: the devices a backend sees, GPU memory growth.
- `choices`: the `Choices` a run makes (precision, jit, distribution, ...) and applying them.
- `environment`: versions and what `dlcli env` prints.
- `compile_cache`: JAX's persistent compilation cache.
- `keras_names`: Keras classes by name, through Keras's own registries.
- `losses`: what a loss expects (class indices, one-hot rows, numbers): the data stage asks
  it which task a config's loss implies.
- `compat`: every private Keras / JAX / TensorFlow API dlcli touches, in one place.

Imports the config stage and the basics; never data, models, run folders or the stages after.
"""
