"""Adapting a trained predictor to a new machine: the correction (``correction``) and the run that
chooses, measures and fits (``run``)."""
