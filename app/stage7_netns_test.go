package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"flickrkillr/models/modeltest"
)

// netnsHost is an instance's "host": a network namespace joined to this
// one by a veth pair, hostIP on our side, IP on its side.
type netnsHost struct {
	name, hostIP, ip string
}

// newNetnsHost makes the namespace and the link, removed when the test
// ends; it skips the test, saying why, where namespaces cannot be made.
func newNetnsHost(t *testing.T, name string, subnet int) netnsHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (ip netns add); not run on ports alone")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip command (iproute2) is not installed")
	}
	h := netnsHost{name: name, hostIP: fmt.Sprintf("10.231.%d.1", subnet), ip: fmt.Sprintf("10.231.%d.2", subnet)}
	outer, inner := name+"h", name+"n"
	run := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", name); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		run("link", "del", outer) // deletes its peer too
		run("netns", "del", name)
	})
	for _, args := range [][]string{
		{"link", "add", outer, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", name},
		{"addr", "add", h.hostIP + "/30", "dev", outer},
		{"link", "set", outer, "up"},
		{"netns", "exec", name, "ip", "addr", "add", h.ip + "/30", "dev", inner},
		{"netns", "exec", name, "ip", "link", "set", inner, "up"},
		{"netns", "exec", name, "ip", "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// forward listens on listen and copies every connection to target: how a
// namespace reaches the PostgreSQL and Redis that listen on our loopback.
func forward(t *testing.T, listen, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// Past one machine: two instances, each in its own network namespace at
// its own address (a "host"), run by hand as `flickrkillr instance` with
// the shared PostgreSQL and Redis; the supervisor only fronts them
// (--upstream). Traffic reaches both, and a SIGKILL of one (nobody restarts
// it: it is another host's) costs no GET. The namespaces share this
// machine's filesystem, so the test cannot catch a missing shared storage
// for the photo files (docs/stages/07-scale-out.md names it).
func TestStage7RemoteInstancesInNetworkNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, makes network namespaces, starts nginx and two instances")
	}
	needCommands(t, "nginx")
	a := newNetnsHost(t, fmt.Sprintf("fk%da", os.Getpid()%100000), 1+os.Getpid()%120)
	b := newNetnsHost(t, fmt.Sprintf("fk%db", os.Getpid()%100000), 121+os.Getpid()%120)
	schema, err := SchemaFor(scaleOutStage)
	if err != nil {
		t.Fatal(err)
	}
	dsn := modeltest.NewDB(t, schema)
	redisURL := testRedisURL(t)
	if redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr() + "/0"
	}
	pg, _ := url.Parse(dsn)
	rd, _ := url.Parse(redisURL)
	exe := buildFlickrkillr(t)
	work := t.TempDir()

	var procs []*exec.Cmd
	for _, h := range []netnsHost{a, b} {
		db, rdb := *pg, *rd
		db.Host = forward(t, h.hostIP+":0", pg.Host)
		rdb.Host = forward(t, h.hostIP+":0", rd.Host)
		cmd := exec.Command("ip", "netns", "exec", h.name, exe, "instance") // ip execs it: cmd's pid is the instance's
		cmd.Env = append(os.Environ(), "DATABASE_URL="+db.String(), "REDIS_URL="+rdb.String(), "DATA_DIR="+filepath.Join(work, "data"),
			"ADDR="+h.ip+":8080", "ADMIN_ADDR=", "STAGE=7", "INDEXES=", "DB_LATENCY=", "METRICS=", "DRAIN_DELAY=0",
			"TRUSTED_PROXIES="+h.hostIP, "INSTANCE="+h.name, "DATABASE_POOLER=", "WORKERS=")
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s's log:\n%s", h.name, logs.String())
			}
		})
	}
	for _, h := range []netnsHost{a, b} {
		waitFor(t, 60*time.Second, h.name+"'s instance to be ready at "+h.ip, func() bool { return ready(h.ip + ":8080") })
	}

	addr, admin := mustFreeAddr(t), mustFreeAddr(t)
	logs := &syncBuffer{}
	sup := exec.Command(exe, "serve", "--stage", "7", "--upstream", a.ip+":8080", "--upstream", b.ip+":8080", "--addr", addr, "--admin-addr", admin)
	sup.Dir = work
	sup.Env = append(os.Environ(), "DATABASE_URL="+dsn, "REDIS_URL="+redisURL, "DATA_DIR="+filepath.Join(work, "data"),
		"STAGE=", "INDEXES=", "INSTANCES=", "INSTANCE_CPUS=", "DB_LATENCY=", "METRICS=", "WORKER_PROCS=", "UPSTREAMS=", "PGBOUNCER=")
	sup.Stdout, sup.Stderr = logs, logs
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sup.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { sup.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			sup.Process.Kill()
		}
		if t.Failed() {
			t.Logf("the supervisor's log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	waitFor(t, 60*time.Second, "nginx and the operator listener to serve", func() bool {
		res, err := http.Get("http://" + admin + "/topology.json") // the operator listener starts last
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK && ready(addr)
	})
	topo := readTopology(t, admin)
	if len(topo.Processes) != 3 || topo.instance("u1").Role != "remote app instance" || !topo.instance("u2").Up {
		t.Fatalf("/topology.json: %+v, want nginx and two remote instances, up", topo.Processes)
	}

	// Traffic from several clients; which instance answered is X-Upstream.
	var requests, failures atomic.Int64
	var first atomic.Value
	var mu sync.Mutex
	seen := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 20 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests.Add(1)
				res, err := c.Get(base + "/")
				if err != nil {
					failures.Add(1)
					first.CompareAndSwap(nil, err)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					failures.Add(1)
					first.CompareAndSwap(nil, fmt.Errorf("status %d", res.StatusCode))
				}
				mu.Lock()
				seen[res.Header.Get("X-Upstream")]++
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 30*time.Second, "traffic to reach both instances", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[a.ip+":8080"] > 0 && seen[b.ip+":8080"] > 0 || seen["u1"] > 0 && seen["u2"] > 0
	})
	if err := procs[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	waitFor(t, 30*time.Second, "200 more GETs after the kill", func() bool { return requests.Load() > before+200 })
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d GETs failed (first: %v), want 0", f, requests.Load(), first.Load())
	}
	t.Logf("%d GETs through nginx to two namespaces, %v by instance; one SIGKILLed mid-traffic, %d failed", requests.Load(), seen, failures.Load())
}
