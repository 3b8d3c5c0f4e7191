//go:build race

package api_test

// raceEnabled: the race detector's instrumentation makes a growing
// bytes.Buffer allocate each step twice (the new slice and its copy).
const raceEnabled = true
