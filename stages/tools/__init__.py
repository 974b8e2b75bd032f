"""Commands of `multvae` that are not DVC stages: looking at a trained model, generating data."""
