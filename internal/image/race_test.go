//go:build race

package image

// raceDetector is true under -race, where compressing the image's layers
// (pure-Go gzip, instrumented) would take many minutes.
const raceDetector = true
