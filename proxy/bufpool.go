package proxy

import (
	"net/http/httputil"
	"sync"
)

// copyBufferSize is the size of the buffers ReverseProxy copies response
// bodies (and WebSocket streams) through: its own default, one TLS record
// and more.
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. Without one,
// ReverseProxy allocates 32 KiB per request, most of what a proxied
// request allocates, and the garbage collector runs every few dozen
// requests to reclaim it (docs/BENCHMARKS.md). The buffers live in a
// sync.Pool, so the collector still drops those an idle proxy does not
// need. They are held as array pointers: putting a pointer in a
// sync.Pool does not allocate, a slice would.
type bufferPool struct {
	pool sync.Pool // of *[copyBufferSize]byte
}

var _ httputil.BufferPool = (*bufferPool)(nil)

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (p *bufferPool) Get() []byte { return p.pool.Get().(*[copyBufferSize]byte)[:] }

// Put takes back a buffer Get lent; anything else is left to the
// collector.
func (p *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	p.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}
