# Sando's everyday commands. `make run` and `make test` are the README's two.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: run test lint build dist bench clean fuzz screenshot

## run: Sando on the embedded Redis with an in-process worker, building sando.yaml.
## Built, then run, rather than `go run`, which turns every exit code into
## 1: a config error exits 2 here too. ARGS are the API's flags.
ARGS ?=
run:
	@$(GO) build -o bin/sando-api ./cmd/api
	./bin/sando-api $(ARGS)

## test: vet, then every unit and integration test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

## lint: gofmt, go vet and golangci-lint (.golangci.yaml, written for
## v2.15.0, which .ci/run installs); a missing golangci-lint fails it
GOLANGCI_LINT ?= golangci-lint
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@command -v $(GOLANGCI_LINT) >/dev/null || { echo "lint: $(GOLANGCI_LINT) not found; install it with" \
		"GOBIN=\$$(go env GOPATH)/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0"; exit 1; }
	$(GOLANGCI_LINT) run ./...

## fuzz: every fuzz target (found with `go test -list`) for FUZZTIME each;
## their seed corpora already run in `make test`
FUZZTIME ?= 10s
fuzz:
	@set -e; \
	list=$$($(GO) test -list '^Fuzz' ./...) || { echo "$$list"; exit 1; }; \
	targets=$$(echo "$$list" | awk '/^Fuzz/ {f[n++] = $$1} /^ok/ {for (i = 0; i < n; i++) print $$2, f[i]; n = 0}'); \
	test -n "$$targets" || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	echo "$$targets" | while read -r pkg fn; do \
		echo "fuzz: $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
	done

## build: static binaries in bin/: the API, the worker and sandoctl
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sando-api ./cmd/api
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sando-worker ./cmd/worker
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/sandoctl ./cmd/sandoctl

## dist: sandoctl for every CI runner: static binaries for linux and
## darwin on amd64 and arm64 in dist/, with SHA256SUMS
DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
dist:
	@rm -rf dist && mkdir -p dist
	@set -e; for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "dist: sandoctl $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w" \
			-o dist/sandoctl-$$os-$$arch ./cmd/sandoctl; \
	done
	cd dist && sha256sum sandoctl-* > SHA256SUMS && cat SHA256SUMS

## bench: Sando side by side with bare asynq, bare Gin and the work itself,
## on a redis-server of its own; prints the table and writes BENCHMARKS.md
## (about 10 minutes on 2 cores). BENCHFLAGS=-short runs it once, tiny.
BENCHFLAGS ?=
bench:
	$(GO) run ./bench $(BENCHFLAGS)

## screenshot: docs/red-run.png, the README's picture of a red run's page,
## taken by the browser test that checks it (needs /usr/bin/chromium)
screenshot:
	@test -x /usr/bin/chromium || { echo "screenshot: needs /usr/bin/chromium (apt-get install chromium)"; exit 1; }
	SANDO_SCREENSHOT=$(CURDIR)/docs/red-run.png $(GO) test -count=1 -run '^TestRedRunPageInBrowser$$' ./e2e

clean:
	rm -rf bin dist data
