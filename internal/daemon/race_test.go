//go:build race

package daemon_test

// raceEnabled: under -race the merges in these tests run several times
// slower, which is what makes a 290 MB merge long enough to watch.
const raceEnabled = true
