# ConsentGate: make build | run | test | fuzz | bench
GO      ?= go
BIN     := bin/consentgate
export CGO_ENABLED ?= 0

.PHONY: build run test vet fmt-check unit race fuzz bench clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/consentgate

run: build
	$(BIN) run --config caddyfiles/demo.Caddyfile --adapter caddyfile

test: fmt-check vet race fuzz

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

unit:
	$(GO) test -count=1 ./...

# Brief runs of every fuzzer (go test -fuzz takes one target per run). Each
# runs a fixed number of inputs (pkg:Fuzzer:count), not a fixed time: a
# timed run can end with a spurious "context deadline exceeded" when a worker
# is mid-input at the deadline. FUZZSCALE multiplies the counts.
FUZZSCALE ?= 1
fuzz:
	@set -e; for spec in \
		./module/internal/token:FuzzVerify:500000 \
		./module/internal/cookies:FuzzScanner:500000 \
		./module/internal/geo:FuzzLookup:200000 \
		./module/internal/policy:FuzzGlob:200000 \
		./module/internal/htmlrewrite:FuzzRewrite:200000 \
		./module/internal/htmlrewrite:FuzzRewriteDiff:200000 \
		./module/internal/htmlrewrite:FuzzPlainURL:300000 \
		./module/internal/htmlrewrite:FuzzSkipWindows:300000 \
		./module/internal/store:FuzzRestore:20000 \
		./module/internal/beacon:FuzzRewriteQuery:200000 \
		./module/internal/beacon:FuzzRewriteJSON:200000 \
		./module/internal/anonymize:FuzzCleanURL:100000 \
		./module/internal/anonymize:FuzzRedactPII:100000 \
		./module/internal/anonymize:FuzzTruncateIPString:100000 \
		./module/internal/ua:FuzzGeneralize:3000 \
		./module:FuzzConsentAPI:1000 \
		; do pkg=$${spec%%:*}; rest=$${spec#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
		echo "fuzz $$pkg $$fn $$((n * $(FUZZSCALE))) inputs"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime "$$((n * $(FUZZSCALE)))x" $$pkg; \
	done

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./module/...
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 1
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 16 -rounds 10 -duration 2s
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 16 -rounds 6 -duration 2s -html-size 51200
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 16 -rounds 6 -duration 2s -beacon

clean:
	rm -rf bin
