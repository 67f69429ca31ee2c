//go:build race

package proxy

// raceDetector is true under -race, where sync.Pool drops a share of what
// it is given on purpose, so allocation counts say nothing.
const raceDetector = true
