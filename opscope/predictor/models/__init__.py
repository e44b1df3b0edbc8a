"""The predictors: the common frame contract (``base``), XGBoost (the default) and scikit-learn models,
the analytical and calibrated analytical models, the rate baseline, and saving and loading (``persist``)."""
