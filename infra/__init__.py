"""How and where things run: the stage runner, per-unit caches, Ray start/connect and maps, DeepSpeed launch, atomic files."""
