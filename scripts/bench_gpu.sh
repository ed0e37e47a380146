#!/usr/bin/env bash
# GPU throughput: the 124M model in bf16 on one GPU, a few hundred steps, our DeepSpeed loop
# beside a plain PyTorch loop; prints tokens/s and MFU (peak bf16 FLOPs per GPU from
# model/trainer.py's table; H100 SXM = 989 TFLOPS). Target: MFU >= 40 % on an H100.
#
#   bash scripts/bench_gpu.sh                 # defaults below
#   STEPS=500 MICRO_BATCH=32 bash scripts/bench_gpu.sh
#
# Needs a CUDA build of torch in .venv (install it before `make install`; the Makefile keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m flows.cli bench train \
  --size "${SIZE:-124M}" --seq-len "${SEQ_LEN:-1024}" --vocab-size "${VOCAB:-50304}" --micro-batch "${MICRO_BATCH:-16}" \
  --steps "${STEPS:-300}" --warmup "${WARMUP:-20}" --zero-stage "${ZERO_STAGE:-1}" \
  --precision bf16 ${COMPILE---compile} --out "${OUT:-runs/bench-gpu}"
