package topology

import (
	"fmt"
	"net"
	"sync"
)

// ports hands out the topology's loopback addresses. Each comes from a
// listener on 127.0.0.1:0 that stays open until the process meant to bind it
// is about to start (release): while a listener is open the kernel gives its
// port to nobody else, so the addresses of one start are distinct by
// construction. Taking a port and closing its listener at once (the old
// freeAddr) let the kernel hand the same port out again: one start at
// --instances 8 gave i6 and i8 both 127.0.0.1:42277, and nginx -t refused
// the duplicate server line. The short gap between release and the child's
// bind is left; another program that binds port 0 in it would make the
// child fail to start, which the supervisor reports (it does not pass
// quietly).
type ports struct {
	mu   sync.Mutex
	held map[string]net.Listener
}

func newPorts() *ports { return &ports{held: map[string]net.Listener{}} }

// take reserves a loopback address with a free port and holds it.
func (p *ports) take() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("topology: reserve a port: %w", err)
	}
	addr := ln.Addr().String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.held[addr]; dup { // cannot happen while both are open: say so if it does
		ln.Close()
		return "", fmt.Errorf("topology: the kernel gave %s twice", addr)
	}
	p.held[addr] = ln
	return addr, nil
}

// hold keeps addr (nginx's, the operator listener's: chosen by the caller)
// from being handed out as a free port to the topology's other processes
// until release: a test that picked it free and let it go saw an
// instance's operator listener take it, and nginx fail to bind. An addr
// that cannot be held (in use already) is left to its process's own error.
func (p *ports) hold(addr string) {
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[addr] = ln
}

// release closes the listeners of addrs ("" skipped), just before the
// process that binds them starts.
func (p *ports) release(addrs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if ln, ok := p.held[a]; ok {
			ln.Close()
			delete(p.held, a)
		}
	}
}

// releaseAll closes every listener still held (on an error path).
func (p *ports) releaseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, ln := range p.held {
		ln.Close()
		delete(p.held, a)
	}
}

// FreePorts are n distinct loopback ports free at this moment, for a
// Service's Addr (chosen before the topology starts, since its URL goes
// into the instances' environment): each listener stays open until all are
// taken, so the kernel cannot hand one out twice. The topology then holds
// each Service's Addr from its start until that Service starts. A port
// that cannot be had is 0, and its Service fails to start, saying so.
func FreePorts(n int) []int {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}
