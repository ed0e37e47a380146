"""Pipeline stages: pure functions first, a thin Prefect task last, run by the content-addressed stage runner."""
