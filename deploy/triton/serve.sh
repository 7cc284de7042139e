#!/bin/sh
# Start tritonserver on $MODEL_REPOSITORY with diffqc's python backend. TRITON_MODEL_CONFIG=gpu
# selects configs/gpu.pbtxt (KIND_GPU instances); empty = the repository's config.pbtxt (KIND_CPU).
# Triton polls the repository every $TRITON_REPOSITORY_POLL_SECS (default 30; 0 = never), so a
# model version staged into it (diffqc export / diffqc onboard --repo) is served without a restart.
set -eu
poll="${TRITON_REPOSITORY_POLL_SECS:-30}"
if [ "$poll" -gt 0 ]; then
  set -- --model-control-mode=poll --repository-poll-secs="$poll" "$@"
fi
set -- --model-repository="${MODEL_REPOSITORY:-/models}" \
  --backend-directory=/opt/diffqc-triton/backends \
  --strict-readiness=true --exit-on-error=true \
  ${TRITON_MODEL_CONFIG:+--model-config-name="$TRITON_MODEL_CONFIG"} "$@"
exec tritonserver "$@"
