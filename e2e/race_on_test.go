//go:build race

package e2e

// raceEnabled says the tests run with the race detector; the crash test
// then builds the binary with it too (and reuses the race build cache).
const raceEnabled = true
