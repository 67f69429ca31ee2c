//go:build !linux

package server

import (
	"syscall"
	"time"
)

// peerGone does not know elsewhere: every handshake goes on to its
// cryptography, as it would without the check.
func peerGone(syscall.RawConn) bool { return false }

// clientSilent does not know elsewhere: no connection is evicted as
// silent, nor as stalled while it waits unread (connlimit.Watcher).
func clientSilent(syscall.RawConn, bool) (bool, time.Duration) { return false, 0 }
