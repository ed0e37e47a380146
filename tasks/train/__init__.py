"""The training wing: pretraining, fine-tuning, SFT and export, all through one launch path (launch.py)."""
