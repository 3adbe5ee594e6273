package devfilter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Cache shares loaded programs between groups whose rule lists compile to
// the same instructions: the first Acquire loads (about 260 us, the
// verifier's work), later ones only count a reference, and the last
// Release closes the descriptor. It is safe for concurrent use; concurrent
// Acquires of one program load it once. A Cache is a value its owner (the
// v2 driver) holds; nothing is global.
type Cache struct {
	log hclog.Logger

	mu     sync.Mutex
	progs  map[string]*cacheEntry
	closed bool
}

type cacheEntry struct {
	ready chan struct{} // closed when prog or err is set
	prog  *Loaded
	err   error
	refs  int
}

// NewCache returns an empty cache that logs loads and closes to log at
// trace level (nil: no logging).
func NewCache(log hclog.Logger) *Cache {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Cache{log: log, progs: make(map[string]*cacheEntry)}
}

// Acquire returns the loaded form of p, loading it if no one holds it.
// Every successful Acquire must be paired with one Release of the returned
// program. Waiting for another caller's load of the same program honours
// ctx.
func (c *Cache) Acquire(ctx context.Context, p *Program) (*Loaded, error) {
	key := p.key()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errors.New("devfilter: program cache is closed")
		}
		e, loading := c.progs[key]
		if !loading {
			e = &cacheEntry{ready: make(chan struct{})}
			c.progs[key] = e
		}
		e.refs++
		c.mu.Unlock()

		if !loading {
			return c.load(ctx, key, e, p)
		}
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.mu.Lock()
			c.dropLocked(key, e)
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		switch {
		case e.err == nil:
			return e.prog, nil
		case isContextErr(e.err) && ctx.Err() == nil:
			// The loader gave up on its own context, not on ours.
			continue
		}
		return nil, e.err
	}
}

// load is Acquire's load by the first caller for key.
func (c *Cache) load(ctx context.Context, key string, e *cacheEntry, p *Program) (*Loaded, error) {
	l, err := Load(ctx, p)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(e.ready)
	if err != nil {
		// Waiters see err; the entry leaves the map so the next Acquire
		// tries again.
		e.err = err
		if c.progs[key] == e {
			delete(c.progs, key)
		}
		return nil, err
	}
	l.key = key
	e.prog = l
	c.log.Trace("loaded device program", "id", l.id, "insns", l.len)
	if c.closed {
		// Close ran while this load was in flight.
		e.err = errors.New("devfilter: program cache is closed")
		l.Close()
		return nil, e.err
	}
	return l, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Release gives back one reference to l, closing its descriptor with the
// last one. A program still attached to a cgroup stays in the kernel.
// After Close, Release does nothing.
func (c *Cache) Release(l *Loaded) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	e, ok := c.progs[l.key]
	if !ok || e.prog != l {
		return fmt.Errorf("devfilter: release of device program %d that this cache does not hold", l.id)
	}
	return c.dropLocked(l.key, e)
}

// dropLocked removes one reference to e; c.mu is held.
func (c *Cache) dropLocked(key string, e *cacheEntry) error {
	e.refs--
	if e.refs > 0 || e.prog == nil {
		// Still in use, or still loading (the loader holds a reference
		// until it returns) or failed (nothing to close).
		return nil
	}
	if c.progs[key] == e {
		delete(c.progs, key)
	}
	if e.prog.fd < 0 {
		return nil
	}
	c.log.Trace("closed device program", "id", e.prog.id)
	return e.prog.Close()
}

// Len returns the number of programs the cache holds loaded.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.progs)
}

// Close closes every program the cache holds, whatever their reference
// counts; attached programs stay in the kernel. Later Acquires fail.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for key, e := range c.progs {
		if e.prog != nil && e.prog.fd >= 0 {
			errs = append(errs, e.prog.Close())
		}
		delete(c.progs, key)
	}
	return errors.Join(errs...)
}
