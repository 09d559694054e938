#!/usr/bin/env bash
# The GPU check, in one go, on a machine with a CUDA GPU and nothing downloaded (no hub access needed):
#   1. builds the tiny checkpoints offline (internvl_tools.testing) and uses the shipped demo model;
#   2. answers the same prompts on CPU fp32 and on CUDA in bf16/fp16 with SDPA (+ flash-attention 2 if installed),
#      and says which answers are token-identical (benchmarks/gpu_check.py; fp32 on CUDA must match exactly);
#   3. runs the side-by-side against plain transformers (benchmarks/peer.py) and the batch benchmark on CUDA.
# Prints one table per step; meant to finish in under 8 minutes. Usage: bash benchmarks/gpu.sh
# PYTHON picks the interpreter (default: .venv/bin/python when it exists, else python3); it needs torch with CUDA
# and this package's dependencies (`make install` on a machine that can reach PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}: run this on a GPU machine")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF

start=$SECONDS
echo "== 1/3 checkpoints (offline) =="
"$PYTHON" -c "from internvl_tools.testing import tiny_checkpoint; print(tiny_checkpoint('qwen2', 'native'))"

echo "== 2/3 CUDA answers vs CPU fp32 =="
status=0
timeout 300 "$PYTHON" benchmarks/gpu_check.py || status=$?

echo "== 3/3 side by side with plain transformers, and batching, on CUDA =="
timeout 150 "$PYTHON" benchmarks/peer.py --device cuda --runs 5 || status=$?
timeout 60 "$PYTHON" benchmarks/peer.py --device cuda --runs 3 --model demo --pages 6 || status=$?

echo "== done in $((SECONDS - start)) s (exit $status) =="
exit "$status"
