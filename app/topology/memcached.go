package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Stage 8's front cache: a memcached of the topology's own, which nginx
// reads whole pages from (memcached_pass) before any instance, and the
// instances fill and delete (their address in MemcachedEnv). Or, with
// FrontProxy, nginx's own proxy_cache as a one-second microcache instead.

// Front caches (Options.FrontCache).
const (
	FrontMemcached = "memcached"
	FrontProxy     = "proxy"
)

// MemcachedEnv is the variable that gives the instances memcached's address.
const MemcachedEnv = "MEMCACHED_ADDR"

// ErrNoMemcached is the refusal to start the front cache without memcached installed.
var ErrNoMemcached = errors.New("topology: memcached is not installed")

// memcachedMemory is memcached's cache size in MB (-m): a page is a few KB,
// so 256 MB keeps some 50k pages before the LRU evicts.
const memcachedMemory = 256

// startMemcached runs memcached on a free loopback port, in the foreground
// (as nobody when the supervisor is root: it refuses to run as root), and waits until
// it accepts connections.
func (t *topology) startMemcached(ctx context.Context) error {
	exe, err := exec.LookPath("memcached")
	if err != nil {
		return ErrNoMemcached
	}
	addr, err := t.ports.take() // held until memcached starts (ports.go)
	if err != nil {
		return err
	}
	t.ports.release(addr)
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", strconv.Itoa(memcachedMemory), "-c", "4096", "-t", "2"}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("topology: memcached refuses to run as root and there is no user nobody to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	t.memcachedAddr = addr
	t.memcached = t.inHost(newProc("memcached", t.log, syscall.SIGTERM, func() *exec.Cmd {
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd
	}), "front", "front")
	t.memcached.cred = cred
	if err := t.memcached.start(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if !t.memcached.status().Up {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("topology: memcached did not start on %s", addr)
}

// memcachedStats are the `stats` figures the dashboard draws, as
// flickrkillr_memcached_<name>: counters since memcached started (true),
// or gauges.
var memcachedStats = []struct {
	name    string
	counter bool
}{
	{"get_hits", true}, {"get_misses", true}, {"evictions", true}, {"cmd_set", true}, {"delete_hits", true},
	{"bytes", false}, {"curr_items", false}, {"limit_maxbytes", false}, {"curr_connections", false},
}

// gatherMemcached adds memcached's stats to the supervisor's metrics (none
// while it is down).
func (t *topology) gatherMemcached(fams map[string]*dto.MetricFamily) {
	if t.memcached == nil {
		return
	}
	st, err := ServerStats(t.memcachedAddr, 500*time.Millisecond)
	if err != nil {
		return
	}
	for _, ms := range memcachedStats {
		v, ok := st[ms.name]
		if !ok {
			continue
		}
		m, typ := gauge(v), dto.MetricType_GAUGE
		if ms.counter {
			m, typ = &dto.Metric{Counter: &dto.Counter{Value: &v}}, dto.MetricType_COUNTER
		}
		addPlain(fams, "flickrkillr_memcached_"+ms.name, "Stage 8: memcached's stats "+ms.name+".", typ, m)
	}
}

func addPlain(fams map[string]*dto.MetricFamily, name, help string, typ dto.MetricType, m *dto.Metric) {
	f, ok := fams[name]
	if !ok {
		f = &dto.MetricFamily{Name: &name, Help: &help, Type: &typ}
		fams[name] = f
	}
	f.Metric = append(f.Metric, m)
}

// ServerStats reads memcached's `stats` from addr (hits, misses, evictions,
// bytes…): the one command the instances' client (gomemcache) lacks, a
// request line and "STAT name value" lines up to "END".
func ServerStats(addr string, timeout time.Duration) (map[string]float64, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return nil, err
	}
	var buf []byte
	tmp := make([]byte, 4096)
	for !strings.HasSuffix(string(buf), "END\r\n") {
		n, err := c.Read(tmp)
		if err != nil {
			return nil, err
		}
		buf = append(buf, tmp[:n]...)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(buf), "\r\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "STAT" {
			if v, err := strconv.ParseFloat(f[2], 64); err == nil {
				out[f[1]] = v
			}
		}
	}
	return out, nil
}
