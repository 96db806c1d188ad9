package app

import (
	"context"
	"log/slog"
	"net"
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

// A DATABASE_URL with a list of hosts has no one place to put the proxy in
// front of: a configuration error that names DB_LATENCY.
func TestDelayProxyRefusesAHostList(t *testing.T) {
	_, _, err := acrossNetwork(Config{DatabaseURL: "postgres://u@a:1,b:2/app", DBLatency: time.Millisecond}, slog.New(slog.DiscardHandler))
	if !IsConfigError(err) || !strings.Contains(err.Error(), "DB_LATENCY") {
		t.Fatalf("a host list: %v, want a configuration error naming DB_LATENCY", err)
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
