"""The pipeline as a user sees it: the Prefect flow, its config, and the `tokenmill` CLI."""
