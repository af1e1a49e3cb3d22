"""Hypothesis experiments: units split in Envoy, events from its log, lift and decision per tick."""
