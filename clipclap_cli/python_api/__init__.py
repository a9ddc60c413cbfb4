"""The Python API's runtime (`clipclap_cli.api.open_store`, `load_model`): stored datasets as
arrays, trained models applied to arrays, videos and stored datasets (docs/python-api.md)."""
