"""The data wing: readers, cleaning rules, dedup, tokenizer training and packing. Imports neither torch nor the training wing."""
