"""Pipeline stages as plain functions, one wing per role (data, train, eval, bench), listed in stages.py. No Prefect here."""
