#!/usr/bin/env bash
# The GPU checks of the curvature, training and landscape issues in one run (about 9 minutes on an H100).
# Run from the repository root on the device machine (torch only, no ipywidgets or bqplot):
#     bash benchmarks/gpu_checks.sh "$OUT"
# Writes JSON and text logs into the folder given (default benchmarks/results/gpu).
set -euo pipefail
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
# training speed: cw.train vs a plain loop, VGG-16 / CIFAR-100-sized synthetic data (paper: ~10 s per epoch)
python benchmarks/bench_training.py --device cuda --model VGG16 --classes 100 --samples 50000 --batch 128 \
    --rounds 2 --json "$out/training_vgg16.json" 2>&1 | tee "$out/training_vgg16.txt"
# one full-data Lanczos iteration on VGG-16 / CIFAR-100 (paper: 27.9 s Hessian, 26.5 s GGN), peak memory
python benchmarks/bench_vgg16_lanczos.py --device cuda --samples 50000 --batch 512 --steps 3 \
    --json "$out/vgg16_lanczos.json" 2>&1 | tee "$out/vgg16_lanczos.txt"
# product ratios to a gradient against the peers (those that are installed)
python benchmarks/bench_curvature.py --device cuda --repeats 5 --skip-eigen \
    --json "$out/curvature.json" 2>&1 | tee "$out/curvature.txt"
# landscape points per second against a plain perturb-and-evaluate loop, VGG-16 on CIFAR-100-shaped data
python benchmarks/bench_landscape.py --device cuda --model VGG16 --data synthetic --classes 100 --samples 50000 \
    --test-samples 10000 --points 8 --json "$out/landscape_vgg16.json" 2>&1 | tee "$out/landscape_vgg16.txt"
