// Package tool pins Helm as a Go tool for the chart in ../rallye (`go tool
// helm lint`, `go tool helm template`, run by `make helm` in CI) and tests
// what the chart renders. It is a module of its own so that Helm's
// dependencies (Kubernetes' client libraries) stay out of Rallye's go.mod.
package tool
