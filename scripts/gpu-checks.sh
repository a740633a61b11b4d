#!/usr/bin/env bash
# GPU checks for a lent GPU machine (the device tool): CUDA tests, torchvision parity,
# engine-vs-DataLoader throughput on the GPU, the demo on CUDA, and the gpu-full accuracy plan.
#
# Prepared here (see docs/gpu.md): wheels the GPU image lacks in .whl/, Fashion-MNIST in .gpu-data/.
# Run there from the repository root:  bash scripts/gpu-checks.sh  (writes results under $OUT).
# Each step has its own time limit, so one that hangs or fails does not cost the others.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
QUALITY_SECONDS=${QUALITY_SECONDS:-300}

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"
if [ -d .gpu-data/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p /usr/share/datasets && cp -r .gpu-data/fashion-mnist /usr/share/datasets/
fi

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, report its status
    local name=$1 limit=$2; shift 2
    local began=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - began)) s"
    tail -n 25 "$OUT/$name.log"
}

nvidia-smi -L
python3 -c "import torch, striate; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
step pytest-gpu 150 python3 -m pytest -q -p no:cacheprovider tests/train/test_cuda.py tests/models/test_torchvision_real.py
step demo-cuda 90 python3 -m striate train -c examples/lenet5-fashion-mnist.yaml --store /tmp/demo-store --no-progress
step throughput-cuda 150 python3 benchmarks/train_throughput.py --device cuda --reps 2
step quality-gpu-full "$QUALITY_SECONDS" python3 benchmarks/fashion_quality.py --plan gpu-full
