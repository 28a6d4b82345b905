"""The codexgate benchmark: the same traffic direct and through codexgate (`python -m bench`)."""
