# ConsentGate: make build | run | test | fuzz | bench
GO      ?= go
BIN     := bin/consentgate
FUZZTIME ?= 5s
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

# Brief runs of every fuzzer (go test -fuzz takes one target per run).
fuzz:
	@set -e; for spec in \
		./module/internal/token:FuzzVerify \
		./module/internal/cookies:FuzzScanner \
		./module/internal/geo:FuzzLookup \
		./module/internal/policy:FuzzGlob \
		./module/internal/htmlrewrite:FuzzRewrite \
		./module:FuzzConsentAPI \
		; do pkg=$${spec%%:*}; fn=$${spec##*:}; \
		echo "fuzz $$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./module/...
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 1
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 16 -rounds 10 -duration 2s
	$(GO) run ./cmd/cgbench -bin $(BIN) -concurrency 16 -rounds 6 -duration 2s -html-size 51200

clean:
	rm -rf bin
