#!/usr/bin/env bash
# Retrains conf/models/passkey-small: four bin/longmem train stages, each continuing the last
# (about 17 minutes on the 2-core machine of TRAINING.md). Usage, from the repository root:
#   conf/models/passkey-small/train.sh OUT     (OUT/stage-4/model is the model)
set -euo pipefail
out=${1:?usage: $0 OUT}
here=$(cd "$(dirname "$0")/../../.." && pwd)
tok=${LONGMEM_TOKENIZER:-$here/conf/demo/tokenizer.model} # OpenLLaMA v2
train() { "$here/bin/longmem" train "$@"; }
common=(--length 48 --passkey-tail 20 --warmup 20)

# 1. from scratch: recall runs whose first copy is often local too (grows the previous-token
#    heads), from a pool where one token identifies its successor
train --out "$out/stage-1" --tokenizer "$tok" --hidden 128 --layers 2 --heads 2 --mem-layers 1 \
  --length 48 --k 2 --batch 64 --cross-batch 1 --cross-batch-late 1 --recall-share 1.0 --recall-local 1.0 \
  --recall-pool 100 --steps 500 --warmup 20 --lr 3e-3 --seed 1 --init-std 0.06 --dtype float32
# 2. passkey prompts (keys only in memory) beside recall runs from 30 tokens: one token no longer
#    identifies its successor, the lookup has to match the two before
train --out "$out/stage-2" --init "$out/stage-1/checkpoint" "${common[@]}" --k 3 --batch 66 --cross-batch 2 \
  --cross-batch-late 2 --recall-share 0.7 --recall-local 0.3 --recall-pool 0 --passkey-context-loss 0.1 \
  --passkey-in-memory 1.0 --steps 800 --lr 2e-3 --min-lr-ratio 0.1 --seed 2
# 3. half passkey prompts
train --out "$out/stage-3" --init "$out/stage-2/checkpoint" "${common[@]}" --k 3 --batch 66 --cross-batch 2 \
  --cross-batch-late 2 --recall-share 0.5 --recall-local 0.2 --recall-pool 0 --passkey-context-loss 0.1 \
  --passkey-in-memory 1.0 --steps 900 --lr 1.5e-3 --min-lr-ratio 0.1 --seed 3
# 4. FoT's large d for the last part: 30 other documents' entries in memory as negatives
train --out "$out/stage-4" --init "$out/stage-3/checkpoint" "${common[@]}" --k 3 --batch 66 --cross-batch 2 \
  --cross-batch-late 32 --late-from 0.2 --recall-share 0.5 --recall-local 0.2 --recall-pool 0 \
  --passkey-context-loss 0.1 --passkey-in-memory 1.0 --steps 1200 --lr 1e-3 --min-lr-ratio 0.1 --seed 4
