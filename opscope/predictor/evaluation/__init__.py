"""Evaluation: splits, metrics, the noise floor, cross-validated evaluation and synthetic test data."""
