"""The offline lab: fit policies on training folds, replay them on held-out folds, score the curves."""
