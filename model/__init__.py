"""Plain PyTorch: the model, token datasets, the DeepSpeed training entry point, evaluation.

Never imports prefect or ray: `deepspeed model/trainer.py spec.json` runs on its own.
"""
