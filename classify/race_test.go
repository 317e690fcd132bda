//go:build race

package classify

// raceSlowdown scales time bounds in tests: the race detector makes the
// scanner about 30 times slower.
const raceSlowdown = 30
