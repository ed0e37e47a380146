"""How and where things run: Ray start/connect and DeepSpeed launch commands. Imports nothing of ours."""
