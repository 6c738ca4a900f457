"""`dlcli init`: starter configs, from the bundled templates (`configs/*.yaml`) or fitted to a
table file (its columns profiled, a config written for them).

Reads tables through the data stage; never imports Keras, models or training.
"""
