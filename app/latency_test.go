package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// The delay proxy's promise is a lower bound: a round trip through it takes
// at least 2·D, whatever the machine's speed. These checks are that
// property, not performance figures.

const testDelay = 25 * time.Millisecond

func TestDelayProxyPostgresRoundTripTakesTwiceTheDelay(t *testing.T) {
	dsn := modeltest.AdminURL(t)
	cfg, stop, err := acrossNetwork(Config{DatabaseURL: dsn, DBLatency: testDelay}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if cfg.DatabaseURL == dsn {
		t.Fatal("the database URL was not rewritten to the proxy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := models.Open(ctx, cfg.DatabaseURL, models.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	sqlDB, _ := db.DB()
	for i := range 3 {
		start := time.Now()
		var one int
		if err := sqlDB.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 through the proxy: %d, %v", one, err)
		}
		if took := time.Since(start); took < 2*testDelay {
			t.Fatalf("query %d took %s through a %s proxy; a round trip must take at least %s", i, took, testDelay, 2*testDelay)
		}
	}
}

func TestDelayProxyRedisPingTakesTwiceTheDelay(t *testing.T) {
	mr := miniredis.RunT(t)
	d := &Deps{Config: Config{DBLatency: testDelay}}
	addr, err := d.overNetwork(mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if addr == mr.Addr() {
		t.Fatal("the Redis address was not rewritten to the proxy")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer rdb.Close()
	defer func() {
		// Closing the Deps ends the proxy's process: nothing listens there any more.
		d.Close()
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("the proxy at %s still accepts after Close", addr)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		start := time.Now()
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 2*testDelay {
			t.Fatalf("PING %d took %s through a %s proxy; a round trip must take at least %s", i, took, testDelay, 2*testDelay)
		}
	}
}

func TestDelayProxyWithoutLatencyIsNotThere(t *testing.T) {
	d := &Deps{}
	if addr, _ := d.overNetwork("127.0.0.1:6379"); addr != "127.0.0.1:6379" {
		t.Fatalf("with no latency the address changed to %s", addr)
	}
	cfg, stop, err := acrossNetwork(Config{DatabaseURL: "postgres://x@db:5432/x"}, slog.New(slog.DiscardHandler))
	if err != nil || cfg.DatabaseURL != "postgres://x@db:5432/x" {
		t.Fatalf("with no latency: %q, %v", cfg.DatabaseURL, err)
	}
	stop()
}

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
	p, err := startLatencyProxy("tcp", echo.Addr().String(), delay)
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
			network, target, rewrite, err := pgTarget(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if network != tt.network || target != tt.target || rewrite("127.0.0.1:1") != tt.rewritten {
				t.Fatalf("got %s %s %s", network, target, rewrite("127.0.0.1:1"))
			}
		})
	}
	if _, _, _, err := pgTarget("postgres://u@a:1,b:2/app"); !IsConfigError(err) {
		t.Fatalf("a host list: %v, want a configuration error", err)
	}
}

func TestDBLatencyConfiguration(t *testing.T) {
	t.Setenv("DB_LATENCY", "soon")
	if _, err := ConfigFromEnv(); !IsConfigError(err) || !strings.Contains(err.Error(), "DB_LATENCY") {
		t.Fatalf("DB_LATENCY=soon: %v, want an error naming DB_LATENCY", err)
	}
	t.Setenv("DB_LATENCY", "1ms")
	cfg, err := ConfigFromEnv()
	if err != nil || cfg.DBLatency != time.Millisecond {
		t.Fatalf("DB_LATENCY=1ms: %s, %v", cfg.DBLatency, err)
	}
	cfg.DBLatency = -time.Millisecond
	if err := cfg.Validate("latency"); !IsConfigError(err) {
		t.Fatalf("a negative latency: %v, want a configuration error", err)
	}
}
