#!/usr/bin/env bash
# Regenerates netgpt/v1/*_pb2*.py(i) from protos/. The one command for Python stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python}" -m grpc_tools.protoc -I protos \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/netgpt/v1/*.proto
