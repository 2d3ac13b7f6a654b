#!/usr/bin/env bash
# Fine-tunes maskwatch's face detector (MODEL_CARD.md, "face detector"): YuNet from ../shared/models (or the
# registry's download), tuned on the @train split of every real scene set, the epoch chosen on their @val splits.
# About 40 minutes on a 2-core CPU (20 epochs of about 100 s, each with a validation pass).
#
#   scripts/train_detector.sh [OUT]        (OUT defaults to runs/detector)
#
# Needs the train extra and ../shared/data (or SHARED=/path/to/shared). Stopped runs resume (--resume); start it
# in the background:  nohup scripts/train_detector.sh > runs/detector.log 2>&1 &
# Extra options (e.g. --threads 4) go in TRAIN_OPTS.
set -euo pipefail
OUT=${1:-runs/detector}
SHARED=${SHARED:-../shared}
D=$SHARED/data/detect
export MASKWATCH_MODELS=${MASKWATCH_MODELS:-$SHARED/models}
DATA=("$D/masks-voc-dev@train" "$D/masks-yolo-extra@train" "$D/ilc-2021@train" "$D/maskdetect-cn@train")
VAL=("$D/masks-voc-dev@val" "$D/masks-yolo-extra@val" "$D/ilc-2021@val" "$D/maskdetect-cn@val")
RESUME=()
if [[ -f "$OUT/last.pt" ]]; then RESUME=(--resume); fi
set -x
maskwatch train-detector "${DATA[@]}" --val "${VAL[@]}" --out "$OUT" --epochs 20 --lr 1e-4 --seed 0 -q \
  "${RESUME[@]}" ${TRAIN_OPTS:-}
