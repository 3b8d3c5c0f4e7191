# Rallye: the commands a developer and CI run. `make help` lists them.
SHELL := /bin/bash

BUF_VERSION := 1.75.0
TOOLS       := $(CURDIR)/.tools
BUF         := $(TOOLS)/node_modules/.bin/buf

# Local development only: the server refuses to start without a secret, and
# production sets its own (or a JWKS URL).
DEV_ENV := RALLYE_JWT_SECRET=local-development-secret-not-for-production

.PHONY: help tools generate console check-console lint check-generated breaking helm test redis-cluster test-cluster build run demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BUF):
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

# The TypeScript client's packages (protoc-gen-es, Connect, TypeScript), pinned
# by clients/ts/package-lock.json; reinstalled when the lock file changes.
TS_MODULES := clients/ts/node_modules/.package-lock.json
$(TS_MODULES): clients/ts/package-lock.json
	npm ci --prefix clients/ts --no-audit --no-fund --silent

# The console's bundler (esbuild) and chart library, pinned by its lock file.
CONSOLE         := internal/console
CONSOLE_MODULES := $(CONSOLE)/web/node_modules/.package-lock.json
$(CONSOLE_MODULES): $(CONSOLE)/web/package-lock.json
	npm ci --prefix $(CONSOLE)/web --no-audit --no-fund --silent

tools: $(BUF) $(TS_MODULES) $(CONSOLE_MODULES) ## install buf and the TypeScript client's packages (pinned, from npm); Go tools are pinned in go.mod
	@$(BUF) --version | grep -qx '$(BUF_VERSION)' || npm install --prefix $(TOOLS) --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

generate: tools ## regenerate gen/ (Go, OpenAPI) and clients/ts/src/gen (TypeScript) from proto/, and the console bundle
	rm -rf gen clients/ts/src/gen
	$(BUF) generate
	@# The console bundles the TypeScript client: rebuild it with the new protos.
	$(MAKE) --no-print-directory console

lint: tools check-generated check-console breaking helm ## gofmt, go vet, staticcheck, buf lint, generated-code freshness, breaking changes, the Helm chart
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	go tool staticcheck ./...
	$(BUF) lint

check-generated: tools ## fail when gen/ or clients/ts/src/gen is not what buf generates from proto/
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BUF) generate -o $$tmp && \
	for d in gen clients/ts/src/gen; do \
		diff -r $$tmp/$$d $$d >/dev/null || { echo "$$d is stale: run make generate and commit"; diff -r $$tmp/$$d $$d | head -20; exit 1; }; \
	done

console: tools ## type-check the console and bundle it into internal/console/dist (committed: go build needs no npm)
	clients/ts/node_modules/.bin/tsc -p $(CONSOLE)/web
	node $(CONSOLE)/web/build.mjs

check-console: tools ## fail when internal/console/dist is not what the console's sources build
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	clients/ts/node_modules/.bin/tsc -p $(CONSOLE)/web && \
	node $(CONSOLE)/web/build.mjs $$tmp && \
	diff -r $$tmp $(CONSOLE)/dist >/dev/null || { echo "$(CONSOLE)/dist is stale: run make console and commit"; diff -rq $$tmp $(CONSOLE)/dist; exit 1; }

# Breaking changes are checked against the newest release tag: until the first
# release the API may still change.
breaking: tools ## buf breaking against the newest release tag
	@tag=$$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); \
	if [ -z "$$tag" ]; then echo "buf breaking: no release tag yet, nothing to compare with"; \
	else $(BUF) breaking proto --against ".git#tag=$$tag,subdir=proto"; fi

# Helm is a Go tool pinned in deploy/helm/tool/go.mod (a module of its own,
# so that Kubernetes' libraries stay out of Rallye's): no downloaded binary.
HELM_KUBE_VERSION := 1.31.0

helm: ## helm lint --strict and helm template of deploy/helm/rallye with each ci/ values file, and the chart's tests
	cd deploy/helm/tool && go vet ./... && for f in ../rallye/ci/*.yaml; do \
		go tool helm lint --strict --quiet ../rallye -f $$f --kube-version $(HELM_KUBE_VERSION) && \
		go tool helm template rallye ../rallye -f $$f --kube-version $(HELM_KUBE_VERSION) >/dev/null || exit 1; done
	cd deploy/helm/tool && go test -count=1 ./...

test: tools ## run every test against local PostgreSQL and Redis, with the race detector (the TypeScript client's too)
	go test -race -count=1 ./...

# The tests of everything Redis carries (live rankings and their streams, the
# dashboards' live updates) again, against a three-node Redis Cluster.
CLUSTER_TESTS := 'TestLeaderboardEndToEnd|TestWatchRankingAcrossInstances|TestRepairJobHealsAFailedPublish|TestKpisAndDashboardsEndToEnd|TestWatchAcrossInstances|TestEventBatchIsOneTrace'

redis-cluster: ## start (or keep) a three-node Redis Cluster on 127.0.0.1:7000-7002
	@.ci/redis-cluster >/dev/null

test-cluster: redis-cluster ## the leaderboard, live-ranking and dashboard-stream tests against Redis Cluster
	RALLYE_TEST_REDIS_CLUSTER=$$(.ci/redis-cluster | tail -1) go test -race -count=1 ./internal/redisdb/... ./internal/leaderboard/... ./internal/dashboard/...
	RALLYE_TEST_REDIS_CLUSTER=$$(.ci/redis-cluster | tail -1) go test -race -count=1 -run $(CLUSTER_TESTS) ./internal/api/ ./internal/app/

build: ## build bin/rallye
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/rallye ./cmd/rallye

run: ## run the server on 127.0.0.1:8080 with the demo company (prints tokens)
	$(DEV_ENV) go run ./cmd/rallye serve --demo

demo: ## seed the demo company and print a token per person
	$(DEV_ENV) go run ./cmd/rallye demo

clean: ## remove build outputs and installed tools
	rm -rf bin $(TOOLS) clients/ts/node_modules clients/ts/dist $(CONSOLE)/web/node_modules
