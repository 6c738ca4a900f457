"""Stage 5, the model: a `keras.Sequential` stack built from `model.layers`, compiled, and
checked against the data before any training.

- `checks`: pre-flight problems, each at the config's line.
- `build`: `resolve` (what the config left out) and `build_model`.
- `inputs`: the preprocessing layer in front of the user's stack.
- `outputs`: targets in the loss's form, outputs as class probabilities.

Imports the stages before it; never run folders' writing, training or the stages after.
"""
