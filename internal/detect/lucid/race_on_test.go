//go:build race

package lucid

// raceEnabled: the race detector makes sync.Pool drop items at random.
const raceEnabled = true
