#!/usr/bin/env bash
# GPU checks in a few minutes, for when a CUDA machine is at hand (no internet needed):
#   1. the GPU tests (pytest -m gpu; among them the pixel loss on CUDA with both rasterisers against the CPU),
#   2. the GPU speed grid (fp32, bf16, fp16 autocast; batch throughput; peak memory) for the three presets
#      at VGA / HD / 4K, plus mobilenet0.25 and resnet152-paper in bf16/fp16 with channels-last memory,
#   3. the report (tables beside the paper's table 5, plot),
#   4. the renderer backends: the torch vs nvdiffrast comparison tests and the time per rendered crop
#      (nvdiffrast needs the optional extra: pip install -e .[render]; its plugin compiles on first use),
# everything written under OUTDIR (created). Exit status: non-zero if the tests or a benchmark failed.
#
#   bash benchmarks/gpu_check.sh OUTDIR [extra grid arguments, e.g. --presets mobilenet0.25]
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUTDIR [extra arguments for benchmarks/speed.py grid]" >&2
    exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
cd "$(dirname "$0")/.."

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing to do" >&2
    exit 3
fi
status=0
{ nvidia-smi || true; python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } \
    >"$out/device.txt" 2>&1

echo "== pytest -m gpu" | tee "$out/pytest-gpu.txt"
python -m pytest -q -m gpu tests/ 2>&1 | tee -a "$out/pytest-gpu.txt" || status=1

tag=$(python -c "import sys; sys.path.insert(0, '.'); from benchmarks.timing import machine_tag; print(machine_tag())")
echo "== speed grid (GPU) -> $out/speed/$tag"
python benchmarks/speed.py grid --settings gpu-fp32,gpu-bf16,gpu-fp16 --budget-s 2 \
    --out "$out/speed/$tag" "$@" 2>&1 | tee "$out/grid.log" || status=1
python benchmarks/speed.py grid --settings gpu-bf16,gpu-fp16 --budget-s 2 --channels-last \
    --presets mobilenet0.25,resnet152-paper --out "$out/speed/$tag-channels-last" "$@" 2>&1 \
    | tee "$out/grid-channels-last.log" || status=1
python -m retina.report.speed --results "$out/speed" --out "$out" || status=1

echo "== renderer backends (torch vs nvdiffrast)" | tee "$out/pytest-render-backends.txt"
python -m pytest -q -m gpu tests/test_render_backends.py 2>&1 | tee -a "$out/pytest-render-backends.txt" || status=1
python benchmarks/render_backends.py --out "$out/render" 2>&1 | tee "$out/render-backends.log" || status=1

echo "gpu_check: results in $out (status $status)"
exit $status
