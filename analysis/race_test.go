//go:build race

package analysis

// raceEnabled: the race detector multiplies resident memory, so memory
// bounds are not checked under it.
const raceEnabled = true
