#!/usr/bin/env bash
# Trains maskwatch's default classifier (MODEL_CARD.md): four classes (with_mask, without_mask, mask_incorrect,
# not_face), 96 x 96 input, fine-tuned from the previous default model on the @train split of every real scene set
# plus chandrikadeb7, scene faces framed by the photo default's face detector (yunet_masks at 1024), validated
# (epoch choice, calibration) on their @val splits. One run, about 17 minutes on a 2-core CPU (cropping once: about
# a minute; then 13 epochs of about 60 s).
#
#   scripts/train_default_model.sh [--dry-run] [OUT]        (OUT defaults to runs/default-model)
#
# Needs the train extra, ../shared/data (or SHARED=/path/to/shared) and this git checkout: the starting point is
# the previous default model, taken from the commit that shipped it and checked against its sha256. The run
# resumes if stopped (--resume); start it in the background:
#   nohup scripts/train_default_model.sh > runs/default-model.log 2>&1 &
# Extra options (e.g. --device cuda --workers 8) go in TRAIN_OPTS; given after the script's own, they win.
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:-runs/default-model}
SHARED=${SHARED:-../shared}
D=$SHARED/data/detect
DATA=("$D/masks-voc-dev@train" "$D/masks-yolo-extra@train" "$D/ilc-2021@train" "$D/maskdetect-cn@train"
      "$SHARED/data/classify/chandrikadeb7")
VAL=("$D/masks-voc-dev@val" "$D/masks-yolo-extra@val" "$D/ilc-2021@val" "$D/maskdetect-cn@val")
PREVIOUS_COMMIT=2376263  # the last commit with the seven-run soup as the default (MODEL_CARD.md, "history")
PREVIOUS_SHA256=3aaa50730cd7429bf3ad2a3ead0ec9feddf8328a42c4b21687d2086fd981fc6e
OPTS=(--init "$OUT/previous.onnx" --lr 5e-5 --epochs 12 --head-epochs 1 --patience 5 --finetune-from 0 --ema 0.999
      --scene-boxes detector --scene-detector yunet_masks:1024 --input-size 96 --erase 0.25
      --not-face on --not-face-max-score 0.6 --select f1 --class-weight-cap 1 --seed 0)

run() {
  echo "+ $*"
  if [[ $DRY == 0 ]]; then "$@"; fi
}

if [[ $DRY == 0 ]]; then
  mkdir -p "$OUT"
  if [[ ! -f "$OUT/previous.onnx" ]]; then
    git show "$PREVIOUS_COMMIT:maskwatch/assets/mask_classifier.onnx" > "$OUT/previous.onnx"
  fi
  echo "$PREVIOUS_SHA256  $OUT/previous.onnx" | sha256sum -c --quiet
fi
# shellcheck disable=SC2086
run maskwatch train "${DATA[@]}" --val "${VAL[@]}" --out "$OUT" "${OPTS[@]}" --resume ${TRAIN_OPTS:-}
echo "next: maskwatch evaluate $OUT/mask_classifier.onnx $D/masks-voc-dev@test $D/masks-yolo-extra@test $D/ilc-2021@test $D/maskdetect-cn@test --boxes detector"
