"""SdrEvaluator: gates a model on museval SDR against the served model; writes a ModelBlessing."""
