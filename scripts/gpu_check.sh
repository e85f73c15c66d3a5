#!/usr/bin/env bash
# The GPU check: one prepared script, under 8 minutes on one CUDA GPU. Run from the repository root:
#     bash scripts/gpu_check.sh [path/to/stylegan2-ada-pytorch]      (output: stdout, files under ${OUT:-/tmp/gpu_check})
# 1. the default's GAN (cgan, mnist-5k) and two classifier cells on the GPU, bf16 autocast on and off (images/s
#    from each stage record); 2. the StyleGAN2 step benchmark at presets small and auto (and the official networks
#    when a checkout is given); 3. per-step timings by precision; 4. a one-GPU torchrun smoke run of train-clf.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
OFFICIAL=${1:-}
mkdir -p "$OUT"
python - <<'PY' || { echo "gpu_check: no CUDA device; nothing to check"; exit 1; }
import torch, sys
assert torch.cuda.is_available()
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
CFG=configs/mnist5k-cgan.yaml
rate() {  # images/s of a finished stage folder, from its record and metrics
  python - "$1" "$2" <<'PY'
import json, sys, pathlib
folder, what = pathlib.Path(sys.argv[1]), sys.argv[2]
rec = json.loads((folder / "stage.json").read_text())
if what == "gan":
    rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines() if l.strip()]
    kimg = max(r.get("kimg", 0) for r in rows)
    print(f"{folder}: {kimg:g} kimg in {rec['seconds']:.1f}s = {1000 * kimg / rec['seconds']:.0f} img/s")
else:
    res = json.loads((folder / "result.json").read_text())
    seen = res["budget"]["steps"] * res["budget"]["batch_size"]
    print(f"{folder}: {seen} images in {res['train_seconds']:.1f}s = {seen / res['train_seconds']:.0f} img/s, "
          f"test acc {100 * res['test']['accuracy']:.2f}%")
PY
}
for amp in off bf16; do
  run="$OUT/default-$amp"
  echo "== the default's GAN and two classifier cells, amp $amp =="
  ganaug split -c $CFG --set out_dir="$run" 2>&1 | tail -1
  timeout 240 ganaug train-gan -c $CFG --set out_dir="$run" --set device=cuda --set gan.amp=$amp --no-progress 2>&1 | tail -2
  rate "$run/gan" gan
  timeout 120 ganaug train-clf -c $CFG --set out_dir="$run" --set device=cuda --set classifier.amp=$amp \
    --arm real --arm real-aug --seed 0 --no-progress 2>&1 | tail -2
  for arm in real real-aug; do rate "$run/clf/$arm/seed-0" clf; done
done
echo "== StyleGAN2 step benchmark: presets small, auto =="
timeout 120 python scripts/bench_stylegan2.py --presets small,auto --resolutions 32,64 --steps 5 --device cuda \
  ${OFFICIAL:+--official "$OFFICIAL"} 2>&1 | tail -20
echo "== per-step timings by precision =="
timeout 60 python scripts/bench_steps.py --device cuda 2>&1 | tail -12
echo "== torchrun, one GPU: train-clf =="
timeout 120 torchrun --standalone --nproc_per_node 1 -m ganaug train-clf -c $CFG --set out_dir="$OUT/default-off" \
  --set device=cuda --arm real --seed 1 --no-progress 2>&1 | tail -3
rate "$OUT/default-off/clf/real/seed-1" clf
echo "gpu_check: done"
