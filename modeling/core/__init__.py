"""Sift's pure machine-learning core: numpy, scikit-learn and torch only.

Nothing here imports Django or `labeling`; import-linter checks it (`make lint`).
"""
