"""The feature store: one zarr hierarchy (folder or URL) that every command shares; where it lives,
how writes commit, locks and integrity checks."""
