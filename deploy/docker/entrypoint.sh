#!/bin/sh
# Entry point of the t2i images (after tini): `t2i <command> …`, plus
#   fetch-model s3://bucket/prefix/ DIR   copy a model prefix from the bucket into DIR (an init container's job);
#   T2I_MODEL=s3://bucket/prefix/         for `worker` and `generate`: copy it to T2I_MODEL_CACHE (default
#                                         /tmp/t2i-model) first, then run with T2I_MODEL set to that directory.
set -eu
app=$(cd "$(dirname "$0")/../.." && pwd)
cd "$app"

# The images hold compiled JavaScript (services/**/*.js); a source checkout runs the TypeScript through tsx.
fetch_model() {
  if [ -f "$app/deploy/docker/fetch-model.js" ]; then
    node "$app/deploy/docker/fetch-model.js" "$@"
  else
    node --import tsx "$app/deploy/docker/fetch-model.ts" "$@"
  fi
}

if [ "${1:-}" = "fetch-model" ]; then
  shift
  fetch_model "$@"
  exit $?
fi

case "${1:-}:${T2I_MODEL:-}" in
  worker:s3://* | generate:s3://*)
    cache="${T2I_MODEL_CACHE:-/tmp/t2i-model}"
    fetch_model "$T2I_MODEL" "$cache"
    T2I_MODEL="$cache"
    export T2I_MODEL
    ;;
esac

if [ -f "$app/services/cli/main.js" ]; then
  exec node "$app/services/cli/main.js" "$@"
fi
exec node "$app/bin/t2i.js" "$@"
