#!/bin/sh
# One entrypoint per service: `<image> ingestion` runs `python -m services.ingestion`;
# `<image> provision-topics ...` creates the Kafka topics. Anything else is refused by name.
set -eu
service="${1:-}"
case "$service" in
  ingestion|preprocessing|inference|scoring|bridge|gateway)
    shift; exec python -m "services.$service" "$@" ;;
  provision-topics)
    shift; exec python /opt/diffqc/deploy/provision_topics.py "$@" ;;
  *)
    echo "usage: <image> ingestion|preprocessing|inference|scoring|bridge|gateway|provision-topics [args]" >&2
    [ "$service" = "--help" ] && exit 0
    echo "unknown service: '$service'" >&2
    exit 64 ;;
esac
