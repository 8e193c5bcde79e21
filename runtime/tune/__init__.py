"""`netc tune`: hyperparameter search over a spec with Optuna (see command.py)."""
