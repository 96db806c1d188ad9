package replicas

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"flickrkillr/app/standby"
	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// The package's tests share two standbys of the test cluster, made once:
// one that replays at once and one 500 ms behind (recovery_min_apply_delay).
var (
	fast, delayed *standby.Standby
	skipReason    string
	tmpDir        string
)

const applyDelay = 500 * time.Millisecond

func TestMain(m *testing.M) {
	code := func() int {
		primary := os.Getenv("TEST_DATABASE_URL")
		if primary == "" {
			skipReason = "TEST_DATABASE_URL not set: export TEST_DATABASE_URL=$(scripts/pg.sh start test)"
			return m.Run()
		}
		if _, err := standby.FindBin("postgres"); err != nil {
			skipReason = err.Error()
			return m.Run()
		}
		var err error
		if tmpDir, err = os.MkdirTemp("", "replicas-test"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmpDir)
		fast, err = startStandby(primary, "test_replicas_fast", 0)
		if err == nil {
			defer fast.Remove(context.Background())
			delayed, err = startStandby(primary, "test_replicas_delayed", applyDelay)
		}
		if err == nil {
			defer delayed.Remove(context.Background())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "replicas tests:", err)
			if strings.Contains(err.Error(), standby.ErrPrimaryNotReady.Error()) {
				skipReason = err.Error()
				return m.Run()
			}
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func startStandby(primary, slot string, delay time.Duration) (*standby.Standby, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s, err := standby.Make(ctx, standby.Options{PrimaryURL: primary, Dir: filepath.Join(tmpDir, slot), Port: port, Slot: slot, ApplyDelay: delay})
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Remove(context.Background())
		return nil, err
	}
	return s, nil
}

func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// env is one test's database on the primary and its standbys.
type env struct {
	url     string
	primary *gorm.DB
	router  *Router
	routed  *gorm.DB
	ports   map[int]string // server port → "primary" or the replica's name
}

// newEnv makes a fresh migrated database on the test cluster, waits until
// each standby has it, and routes between them.
func newEnv(t *testing.T, o Options, reps ...*standby.Standby) *env {
	t.Helper()
	need(t)
	dbURL := modeltest.NewDB(t, migrations.Latest())
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	ctx := context.Background()
	primary, err := models.Open(ctx, dbURL, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{url: dbURL, primary: primary, ports: map[int]string{}}
	e.ports[portOf(t, dbURL)] = "primary"
	var list []Replica
	for _, s := range reps {
		name := filepath.Base(s.Dir)
		var db *gorm.DB
		for deadline := time.Now().Add(10 * time.Second); ; {
			if db, err = models.Open(ctx, s.URL(dbName), models.Options{}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the database never showed on %s: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		list = append(list, Replica{Name: name, URL: s.URL(dbName), DB: db})
		e.ports[s.Port] = name
	}
	pctx, stop := context.WithCancel(ctx)
	e.router = New(primary, dbURL, list, o)
	e.router.Start(pctx)
	t.Cleanup(func() {
		stop()
		for _, r := range list {
			if sqlDB, err := r.DB.DB(); err == nil {
				sqlDB.Close()
			}
		}
		if sqlDB, err := primary.DB(); err == nil {
			sqlDB.Close()
		}
	})
	if e.routed, err = e.router.DB(); err != nil {
		t.Fatal(err)
	}
	return e
}

func portOf(t *testing.T, dbURL string) int {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(u.Port(), &p)
	return p
}

// server says which server served a read through the routed handle.
func (e *env) server(ctx context.Context) (string, error) {
	var port int
	err := e.routed.WithContext(ctx).Raw(`SELECT inet_server_port()`).Scan(&port).Error
	if err != nil {
		return "", err
	}
	return e.ports[port], nil
}

// waitInRotation waits until the named replicas are in the rotation.
func (e *env) waitInRotation(t *testing.T, want bool, names ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, rs := range e.router.Stats().Replicas {
			for _, n := range names {
				if rs.Name == n && rs.InRotation != want {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v not in rotation=%v after 10 s: %+v", names, want, e.router.Stats().Replicas)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
