// Go stubs of NetGPT's gRPC services, generated from protos/ (see buf.gen.yaml here).
// The floors are the Debian bookworm packages they are compiled and tested against
// (golang-google-grpc-dev 1.33.3, golang-google-protobuf-dev 1.28.1); go.sum is not committed
// because this repository's CI builds offline from those packages (GO111MODULE=off, see
// clients/stubs.sh) — with network access, `go mod tidy` writes it.
module github.com/netgpt/netgpt/clients/go

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
