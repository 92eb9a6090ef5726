"""Ray actor shells over engine/ and rollout/ (no math here), and local-Ray start-up."""
