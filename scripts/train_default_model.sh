#!/usr/bin/env bash
# Trains the seven runs that make up maskwatch's default classifier and averages them (MODEL_CARD.md).
#
#   scripts/train_default_model.sh [--dry-run] [OUT]        (OUT defaults to runs/default-model)
#
# Needs the train extra and ../shared/data (or SHARED=/path/to/shared). Every run starts from the same seed,
# so the runs can be averaged. A run whose OUT/NAME/mask_classifier.onnx exists is skipped, so the script can
# be stopped and started again. On one H100 the seven runs take about 20 minutes one after the other; on a
# 2-core CPU a fine-tuning epoch takes about 5 minutes, so plan on a day. Extra options for every run (e.g.
# --device cuda --workers 8) go in TRAIN_OPTS.
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:-runs/default-model}
SHARED=${SHARED:-../shared}
DATA=("$SHARED/data/classify/facemask12k/train" "$SHARED/data/classify/chandrikadeb7" "$SHARED/data/detect/masks-voc-dev@train")
COMMON=(--finetune-from 0 --patience 10 --seed 0 --scene-boxes truth)

# name | settings beyond COMMON (H is the first default model; it was trained with --epochs 40)
MEMBERS=(
  "H|--epochs 40"
  "E|--epochs 36 --ema 0.999"
  "R|--epochs 36 --erase 0.5"
  "ER|--epochs 36 --ema 0.999 --erase 0.5"
  "Eb75|--epochs 36 --ema 0.999 --source-balance 0.75"
  "Eb1|--epochs 36 --ema 0.999 --source-balance 1"
  "Ew3|--epochs 36 --ema 0.999 --nomask-weight 3"
)

run() {
  echo "+ $*"
  if [[ $DRY == 0 ]]; then "$@"; fi
}

models=()
for m in "${MEMBERS[@]}"; do
  name=${m%%|*}
  read -r -a opts <<< "${m#*|}"
  models+=("$OUT/$name/mask_classifier.onnx")
  if [[ $DRY == 0 && -f "$OUT/$name/mask_classifier.onnx" ]]; then
    echo "= $name: $OUT/$name/mask_classifier.onnx exists, skipped"
    continue
  fi
  # shellcheck disable=SC2086
  run maskwatch train "${DATA[@]}" --out "$OUT/$name" "${COMMON[@]}" "${opts[@]}" ${TRAIN_OPTS:-}
done
run maskwatch soup "${models[@]}" --out "$OUT/mask_classifier.onnx" --force
echo "next: maskwatch evaluate $OUT/mask_classifier.onnx $SHARED/data/detect/masks-voc-dev@test $SHARED/data/detect/masks-yolo-extra"
