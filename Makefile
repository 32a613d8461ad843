# Sando's everyday commands. `make run` and `make test` are the README's two.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: run test lint build bench clean

## run: Sando on the embedded Redis with an in-process worker, building sando.yaml
run:
	$(GO) run ./cmd/api

## test: vet, then every unit and integration test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

## lint: gofmt and go vet (golangci-lint when installed)
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@if command -v golangci-lint >/dev/null; then golangci-lint run; else echo "golangci-lint not installed: skipped"; fi

## build: static binaries in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sando-api ./cmd/api
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sando-worker ./cmd/worker

clean:
	rm -rf bin data
