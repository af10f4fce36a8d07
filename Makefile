.DEFAULT_GOAL := help
GO ?= go

.PHONY: help
help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: test
test: ## Run every test with the race detector (needs the local PostgreSQL, NATS, RabbitMQ and Redis), then the example modules
	$(GO) test -race -count=1 -timeout 20m ./...
	cd examples/quickstart && $(GO) test -count=1 ./...
	cd examples/shipping && $(GO) test -count=1 ./...

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	$(GO) vet ./...
	golangci-lint run ./...

.PHONY: bench
bench: ## Go benchmarks of the outbox engine (see docs/BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out

.PHONY: bench-watermill
bench-watermill: ## Watermill's SQL → NATS forwarder on a 200k backlog, to compare with herald bench --mode relay
	cd benchmarks/watermill && $(GO) run . --events 200000 --schema default
	cd benchmarks/watermill && $(GO) run . --events 200000 --schema queue

.PHONY: tidy
tidy: ## go mod tidy and fail if it changed anything
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
