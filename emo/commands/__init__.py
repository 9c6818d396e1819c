"""The ``emo`` command groups, one module each; :mod:`emo.cli` registers them."""
