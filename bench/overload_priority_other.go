//go:build !linux

package bench

// Without Linux's scheduling classes the flood and the front run as
// started (overload_priority_linux.go chooses them on Linux).

func floodPriority() []string { return nil }

func frontPolicy() (normal bool, nice int) { return false, 0 }
