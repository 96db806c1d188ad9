package netdelay

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Chunks sent 5 ms apart through a 50 ms proxy to an echo server must each
// come back at least 100 ms after they left, and the delays must overlap: a
// proxy that slept per read would take 20 × 100 ms, not about 200 ms.
func TestDelayProxyDelaysEveryChunkWithoutSerialising(t *testing.T) {
	const delay, chunks, gap = 50 * time.Millisecond, 20, 5 * time.Millisecond
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := Start("tcp", echo.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))

	connected := time.Now()
	sent := make([]time.Time, chunks)
	go func() {
		for i := range chunks {
			sent[i] = time.Now()
			fmt.Fprintf(conn, "%d\n", i)
			time.Sleep(gap)
		}
	}()
	r := bufio.NewReader(conn)
	for i := range chunks {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		got, _ := strconv.Atoi(strings.TrimSpace(line))
		if got != i {
			t.Fatalf("chunk %d came back as %q: out of order", i, line)
		}
		// sent[i] was written before the chunk left: the read cannot race it.
		if took := time.Since(sent[i]); took < 2*delay {
			t.Fatalf("chunk %d came back after %s; each way takes %s", i, took, delay)
		}
	}
	// The handshake's round trip, the sending time and one round trip:
	// about 2·delay + 100 ms + 2·delay. A proxy that serialised the delays
	// could not take less than chunks × 2·delay (2 s): that floor is the bound,
	// so only a stall of over a second and a half on a busy machine, not
	// ordinary load, could fail a correct proxy.
	if took := time.Since(connected); took >= chunks*2*delay {
		t.Fatalf("%d chunks took %s: the proxy serialises the delays", chunks, took)
	}
}

func TestDelayProxyDatabaseURLs(t *testing.T) {
	tests := []struct {
		name, dsn, network, target, rewritten string
	}{
		{"host and port", "postgres://u@db.example:6000/app?sslmode=disable", "tcp", "db.example:6000", "postgres://u@127.0.0.1:1/app?sslmode=disable"},
		{"default port", "postgres://u@db.example/app", "tcp", "db.example:5432", "postgres://u@127.0.0.1:1/app"},
		{"unix socket in the query", "postgres://u@/app?host=/run/pg&port=5433", "unix", "/run/pg/.s.PGSQL.5433", "postgres://u@127.0.0.1:1/app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			network, target, rewrite, err := PGTarget(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if network != tt.network || target != tt.target || rewrite("127.0.0.1:1") != tt.rewritten {
				t.Fatalf("got %s %s %s", network, target, rewrite("127.0.0.1:1"))
			}
		})
	}
	if _, _, _, err := PGTarget("postgres://u@a:1,b:2/app"); err == nil {
		t.Fatalf("a host list: %v, want an error", err)
	}
}
