"""Learned predictors: XGBoost (the default) and scikit-learn models, one file per family."""
