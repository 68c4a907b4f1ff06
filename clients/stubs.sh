#!/usr/bin/env bash
# Stubs of the protos for clients in other languages, committed under clients/ (see clients/README.md).
#
#   clients/stubs.sh generate   # rewrite clients/ts/src/gen (npm protoc-gen-es) and clients/go/netgpt (Debian plugins)
#   clients/stubs.sh check      # fail when the committed stubs differ from what the protos generate
#   clients/stubs.sh go-build   # go vet the Go stubs and example with Debian's toolchain, offline
#
# TypeScript needs only `npm install` at the repository root. Go needs
#   apt-get install golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev \
#     golang-github-golang-protobuf-1-5-dev   # not 1-3: grpc 1.33's codec then panics on APIv2 messages
# `check` and `go-build` skip the Go half, saying so, where those are not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF=node_modules/.bin/buf
GO_TEMPLATE=clients/go/buf.gen.yaml
GO_IMPORT=github.com/netgpt/netgpt/clients/go  # the module in clients/go/go.mod (go_package in the protos)

have_go_plugins() { command -v protoc-gen-go >/dev/null && command -v protoc-gen-go-grpc >/dev/null; }

generate() {
  have_go_plugins || { echo "protoc-gen-go / protoc-gen-go-grpc not found: apt-get install protoc-gen-go protoc-gen-go-grpc" >&2; exit 1; }
  rm -rf clients/ts/src/gen clients/go/netgpt
  "$BUF" generate
  "$BUF" generate --template "$GO_TEMPLATE"
}

check() {
  local scratch status=0
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  "$BUF" generate -o "$scratch"
  diff -rq "$scratch/clients/ts/src/gen" clients/ts/src/gen || status=1
  if have_go_plugins; then
    "$BUF" generate --template "$GO_TEMPLATE" -o "$scratch"
    diff -rq "$scratch/clients/go/netgpt" clients/go/netgpt || status=1
  else
    echo "stubs: protoc-gen-go / protoc-gen-go-grpc not installed: Go stubs NOT checked (TypeScript checked)" >&2
  fi
  if [ "$status" -ne 0 ]; then
    echo "stubs: the committed client stubs are stale; run \`make stubs\` and commit clients/" >&2
  fi
  return "$status"
}

go_build() {
  if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
    echo "stubs: go or Debian's golang-google-grpc-dev not installed: Go stubs NOT compiled" >&2
    return 0
  fi
  if ! grep -qs '"google.golang.org/protobuf/' /usr/share/gocode/src/github.com/golang/protobuf/proto/*.go; then
    echo "stubs: Debian's github.com/golang/protobuf is 1.3: apt-get install golang-github-golang-protobuf-1-5-dev" \
         "(with 1.3 the stubs compile but grpc's codec panics on their messages)" >&2
    return 1
  fi
  # GOPATH mode against Debian's packaged sources: no module proxy, no network.
  local gopath
  gopath=$(mktemp -d)
  trap 'rm -rf "$gopath"' RETURN
  mkdir -p "$gopath/src/$(dirname "$GO_IMPORT")"
  ln -s "$PWD/clients/go" "$gopath/src/$GO_IMPORT"
  local out="${GO_BIN_DIR:-$gopath/bin}"
  (cd "$gopath/src/$GO_IMPORT" \
    && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= go vet ./... \
    && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= go build -o "$out/ask" ./examples/ask)
  echo "stubs: Go stubs and examples/ask compiled (go vet clean) with $(go version | cut -d' ' -f3)"
}

case "${1:-}" in
  generate) generate ;;
  check) check ;;
  go-build) go_build ;;
  *) echo "usage: $0 generate|check|go-build" >&2; exit 2 ;;
esac
