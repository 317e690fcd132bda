//go:build !race

package classify

const raceSlowdown = 1
