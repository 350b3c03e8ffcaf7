"""The IPython layer: the `%meshimage` magic and its cell grammar. The rest of the package
works without IPython."""
