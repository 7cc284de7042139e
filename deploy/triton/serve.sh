#!/bin/sh
# Start tritonserver on $MODEL_REPOSITORY with diffqc's python backend. TRITON_MODEL_CONFIG=gpu
# selects configs/gpu.pbtxt (KIND_GPU instances); empty = the repository's config.pbtxt (KIND_CPU).
set -eu
set -- --model-repository="${MODEL_REPOSITORY:-/models}" \
  --backend-directory=/opt/diffqc-triton/backends \
  --strict-readiness=true --exit-on-error=true \
  ${TRITON_MODEL_CONFIG:+--model-config-name="$TRITON_MODEL_CONFIG"} "$@"
exec tritonserver "$@"
