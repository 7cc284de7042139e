#!/bin/sh
# Start tritonserver on $MODEL_REPOSITORY with diffqc's python backend. TRITON_MODEL_CONFIG=gpu
# selects configs/gpu.pbtxt (KIND_GPU instances); empty = the repository's config.pbtxt (KIND_CPU).
# Triton polls the repository every $TRITON_REPOSITORY_POLL_SECS (default 30; 0 = never), so a
# model version staged into it (diffqc export / diffqc onboard --repo) is served without a restart.
#
# Only what the inference service uses is open: gRPC health, metadata and inference. Models change
# only through the repository: poll mode (or none) refuses the load/unload APIs; the repository
# index, model configs, shared-memory registration, statistics, trace and logging APIs demand a
# header whose value is drawn at random at each start and never shown; HTTP listens on the
# container's loopback alone (the health checks), so it is not reachable from the network.
set -eu
poll="${TRITON_REPOSITORY_POLL_SECS:-30}"
if [ "$poll" -gt 0 ]; then
  set -- --model-control-mode=poll --repository-poll-secs="$poll" "$@"
else
  set -- --model-control-mode=none "$@"
fi
closed="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
admin_apis="model-repository,model-config,shared-memory,statistics,trace,logging"
set -- --model-repository="${MODEL_REPOSITORY:-/models}" \
  --backend-directory=/opt/diffqc-triton/backends \
  --strict-readiness=true --exit-on-error=true \
  --http-address=127.0.0.1 \
  --grpc-restricted-protocol="$admin_apis:diffqc-closed=$closed" \
  --http-restricted-api="$admin_apis,metadata,inference:diffqc-closed=$closed" \
  ${TRITON_MODEL_CONFIG:+--model-config-name="$TRITON_MODEL_CONFIG"} "$@"
exec tritonserver "$@"
