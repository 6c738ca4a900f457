"""Files the model learns features from: images (and, later, text and recordings).

- `listing`: which files a source holds and the label of each (a folder with one
  sub-folder per class, a table of paths, `predict`'s file or folder), and the layout checks.
- `images`: image files read once, checked, decoded by Keras's `load_img` into `ImageRows`
  that training reads a piece at a time.

Imports the basics and `dlcli.data.sources.base`; Keras and PIL inside the functions.
"""
