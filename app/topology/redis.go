package topology

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"

	"flickrkillr/app/obs"
)

// The topology's two Redis roles. A cache and a queue never share an
// eviction policy: a cache under memory pressure must forget (evict), and a
// queue, the sessions and the throttles must never lose a key (noeviction:
// a full Redis refuses writes instead). With one Redis for both, a cache
// that filled memory either evicted sessions and queued jobs, or stopped the
// queue; and a cache kept on disk came back warm after a restart, which had
// read as a 25-30% faster second run in an earlier comparison.
//
//   - the durable Redis (REDIS_URL): sessions, throttles and stage 6's queue;
//     an append-only file in the topology's folder, written and fsynced
//     before each reply (appendfsync always): an upload acknowledged with its
//     job queued survives a kill of Redis and a crash of the machine.
//     everysec is not enough even for a kill: while a background fsync is
//     slow, redis-server postpones its write of the file for up to 2 s and
//     replies all the same, so a SIGKILL then loses acknowledged writes (CI
//     lost 17 of 1,000 pushed jobs so). The fsync is shared by every client
//     served in one turn of its loop: redis-benchmark, 50 clients, SET and
//     RPUSH 56k/s either way (p50 0.45 -> 0.65 ms); one client alone 26.5k/s
//     -> 4.2k/s. maxmemory-policy noeviction.
//   - the cache Redis (CacheRedisEnv): stage 3's cache; nothing on disk (a
//     restart starts it empty), maxmemory with volatile-lru: it evicts the
//     least recently used of the keys that have an expiry, which are the
//     cached values, and never the generations and the epoch that say which
//     values are current (models/cache.go), which have none.

// CacheRedisEnv is the variable that gives the instances and workers the
// cache Redis's URL.
const CacheRedisEnv = "REDIS_CACHE_URL"

// DefaultCacheMaxMemory is the cache Redis's maxmemory when Options.CacheMaxMemory is empty.
const DefaultCacheMaxMemory = "256mb"

// redisKind is one of the two roles.
type redisKind struct {
	name, role string
	args       func(t *topology) []string
}

var (
	durableRedis = redisKind{"redis", "durable Redis (sessions, throttles, queue)", func(t *topology) []string {
		return []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"}
	}}
	cacheRedis = redisKind{"redis-cache", "cache Redis (stage 3's cache; evicts)", func(t *topology) []string {
		max := t.o.CacheMaxMemory
		if max == "" {
			max = DefaultCacheMaxMemory
		}
		return []string{"--save", "", "--appendonly", "no", "--maxmemory", max, "--maxmemory-policy", "volatile-lru"}
	}}
)

// startRedis runs a redis-server of the topology's own, of kind k, on a free
// port, and returns its process and URL.
func (t *topology) startRedis(ctx context.Context, k redisKind) (*proc, string, error) {
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", ErrNoRedisServer
	}
	addr, err := t.ports.take()
	if err != nil {
		return nil, "", err
	}
	t.ports.release(addr)
	_, port, _ := net.SplitHostPort(addr)
	logFile := filepath.Join(t.dir, k.name+".log")
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", t.dir, "--logfile", logFile}, k.args(t)...)
	p := t.inHost(newProc(k.name+"-server", t.log, syscall.SIGTERM, func() *exec.Cmd { return exec.Command(exe, args...) }), "redis", "redis")
	if err := p.start(ctx); err != nil {
		return nil, "", err
	}
	// Ready is a PONG, not an open port: with its append-only file from an
	// earlier run, redis-server accepts connections at once but answers
	// "-LOADING" until the file is read, and an instance that met that
	// answer at its start exited (every instance, at every restart of the
	// topology after the first). A large file takes a while: up to a minute.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if redisAnswers(addr) {
			return p, "redis://" + addr + "/0", nil
		}
		if !p.status().Up {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, "", fmt.Errorf("topology: %s did not start on %s (its log: %s)", k.name, addr, logFile)
}

// redisAnswers says whether the Redis at addr answers PING with PONG (not
// with an error such as LOADING).
func redisAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(reply, "+PONG")
}

// RedisInfo reads the numeric fields of Redis's INFO at addr (used_memory,
// maxmemory, evicted_keys, keyspace_hits, keyspace_misses…).
func RedisInfo(addr string, timeout time.Duration) (map[string]float64, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("INFO\r\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("topology: INFO answered %q", strings.TrimSpace(head))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	info := map[string]float64{}
	for _, line := range strings.Split(string(body), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			info[k] = f
		}
	}
	return info, nil
}

// redisRole is a Redis the topology runs, as /topology.json shows it.
type redisRole struct {
	Name       string  `json:"name"`
	Role       string  `json:"role"`
	URL        string  `json:"url"`
	UsedMemory float64 `json:"used_memory_bytes"`
	MaxMemory  float64 `json:"maxmemory_bytes"` // 0: none
	Evicted    float64 `json:"evicted_keys"`
	Hits       float64 `json:"keyspace_hits"`
	Misses     float64 `json:"keyspace_misses"`
	HitRatio   float64 `json:"hit_ratio"` // hits / (hits + misses) since it started
}

// redisRoles are the topology's Redis servers (those it started or was
// given), with their INFO figures where they answer.
func (t *topology) redisRoles() []redisRole {
	var roles []redisRole
	for _, r := range []struct {
		k   redisKind
		url string
	}{{durableRedis, t.redisURL}, {cacheRedis, t.cacheRedisURL}} {
		if r.url == "" {
			continue
		}
		role := redisRole{Name: r.k.name, Role: r.k.role, URL: r.url}
		if addr := redisAddr(r.url); addr != "" {
			if info, err := RedisInfo(addr, 300*time.Millisecond); err == nil {
				role.UsedMemory, role.MaxMemory = info["used_memory"], info["maxmemory"]
				role.Evicted, role.Hits, role.Misses = info["evicted_keys"], info["keyspace_hits"], info["keyspace_misses"]
				if n := role.Hits + role.Misses; n > 0 {
					role.HitRatio = role.Hits / n
				}
			}
		}
		roles = append(roles, role)
	}
	return roles
}

// redisAddr is the host:port of a redis:// URL ("" if it has none).
func redisAddr(url string) string {
	rest, ok := strings.CutPrefix(url, "redis://")
	if !ok {
		return ""
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// gatherRedis adds each Redis role's memory, evictions and hits to the
// supervisor's metrics, labelled redis="redis" or "redis-cache".
func (t *topology) gatherRedis(fams map[string]*dto.MetricFamily) {
	for _, r := range t.redisRoles() {
		label := func(m *dto.Metric) *dto.Metric {
			name, value := "redis", r.Name
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &value})
			return m
		}
		counter := func(v float64) *dto.Metric { return label(&dto.Metric{Counter: &dto.Counter{Value: &v}}) }
		addPlain(fams, "flickrkillr_redis_used_memory_bytes", "Redis's INFO used_memory, by role.", dto.MetricType_GAUGE, label(gauge(r.UsedMemory)))
		addPlain(fams, "flickrkillr_redis_maxmemory_bytes", "Redis's maxmemory (0: none), by role.", dto.MetricType_GAUGE, label(gauge(r.MaxMemory)))
		addPlain(fams, "flickrkillr_redis_evicted_keys_total", "Keys Redis evicted under maxmemory, by role.", dto.MetricType_COUNTER, counter(r.Evicted))
		addPlain(fams, "flickrkillr_redis_keyspace_hits_total", "Redis's keyspace hits, by role.", dto.MetricType_COUNTER, counter(r.Hits))
		addPlain(fams, "flickrkillr_redis_keyspace_misses_total", "Redis's keyspace misses, by role.", dto.MetricType_COUNTER, counter(r.Misses))
	}
}

// redisPanels show the two roles side by side on the dashboard.
func redisPanels() []obs.Panel {
	by := func(name, role string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Gauge(name, obs.Label("redis", role)) / (1 << 20) }
	}
	rate := func(name, role string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Rate(name, obs.Label("redis", role)) }
	}
	hitRatio := func(s *obs.Sample) float64 {
		f := obs.Label("redis", cacheRedis.name)
		h, m := s.Rate("flickrkillr_redis_keyspace_hits_total", f), s.Rate("flickrkillr_redis_keyspace_misses_total", f)
		if h+m == 0 {
			return 0
		}
		return 100 * h / (h + m)
	}
	return []obs.Panel{
		{ID: "redismemory", Title: "Redis memory, by role", Unit: "MB",
			Note: "the cache Redis evicts at its maxmemory (volatile-lru); the durable one never evicts", Series: []obs.Series{
				{Label: "durable used", Value: by("flickrkillr_redis_used_memory_bytes", durableRedis.name)},
				{Label: "cache used", Value: by("flickrkillr_redis_used_memory_bytes", cacheRedis.name)},
				{Label: "cache maxmemory", Value: by("flickrkillr_redis_maxmemory_bytes", cacheRedis.name)},
			}},
		{ID: "rediscache", Title: "Cache Redis: hits and evictions", Unit: "% hits; evictions/s", Series: []obs.Series{
			{Label: "hit ratio %", Value: hitRatio},
			{Label: "evictions/s", Value: rate("flickrkillr_redis_evicted_keys_total", cacheRedis.name)},
		}},
	}
}
