//go:build !race

package daemon_test

// raceEnabled: see race_test.go.
const raceEnabled = false
