package app

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// An idle keep-alive connection keeps the goroutine stack its last request
// grew: the collector halves a stack only at its cycles, and with thousands
// of idle connections making no garbage there are few (the C10K crowd of
// `loadtest --scenario connections`, docs/concurrency.md). The crowd's one
// request, the stylesheet, must therefore fit in an 8 KB stack; through
// http.ServeFileFS under the middleware chain it took 9 KB, and every such
// connection kept 16 KB. Measured here with the collector off, so that the
// figure is what the request grew the stack to, not the collector's timing.
func TestIdleConnectionAfterTheStylesheetKeepsAnEightKBStack(t *testing.T) {
	ta := newTestApp(t, DefaultStage())
	for _, path := range []string{"/static/style.css", "/healthz"} {
		perConn := idleStackPerConn(t, ta.App, path, 200)
		t.Logf("%s: %.0f bytes of goroutine stack per idle connection", path, perConn)
		if perConn > 10<<10 {
			t.Errorf("%s: %.1f KB of goroutine stack per idle connection, want at most 8 KB (10 with slack): "+
				"the request's deepest point no longer fits an 8 KB stack", path, perConn/1024)
		}
	}
}

// idleStackPerConn opens n connections to our http.Server serving h, each
// asking for path once and then left idle, and returns the growth of the
// process's goroutine stacks per connection.
func idleStackPerConn(t *testing.T, h http.Handler, path string, n int) float64 {
	t.Helper()
	srv := newServer("127.0.0.1:0", h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	time.Sleep(50 * time.Millisecond) // the accept loop at rest
	before := stackBytes()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + ln.Addr().String() + "\r\n\r\n")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Close {
			t.Fatalf("GET %s: status %d, close %v; want 200 and keep-alive", path, res.StatusCode, res.Close)
		}
	}
	time.Sleep(100 * time.Millisecond) // every server goroutine back in its wait for the next request
	return float64(int64(stackBytes())-int64(before)) / float64(n)
}

// stackBytes is the memory of all goroutine stacks, as /healthz?data=1
// reports it (obs.ReadProcessStats).
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
