"""The evaluation wing: the evaluate stage (metrics) and the report drawn from them."""
