package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"flickrkillr/app/guard"
	"flickrkillr/app/obs"
	"flickrkillr/app/topology"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
)

// needCommands skips a test when one of the commands (nginx, pgbouncer,
// memcached, redis-server) is not installed; in CI, where scripts/test.sh
// installs them all, it fails instead.
func needCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (scripts/test.sh installs it)", name)
			}
			pkg := name
			if name == "nginx" {
				pkg = "nginx-light"
			}
			t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
		}
	}
}

// Behind nginx the client's address is X-Forwarded-For's, from a loopback
// peer only: the per-address log-in throttle counts the client, not nginx,
// and a client cannot pick its own address by sending the header.
func TestStage7TrustsForwardedForFromLoopbackOnly(t *testing.T) {
	extract := behindNginx(Config{}).IPExtractor
	for _, tt := range []struct {
		name, peer, xff, want string
	}{
		{"nginx on loopback names the client", "127.0.0.1", "203.0.113.9", "203.0.113.9"},
		{"a remote peer's header is ignored", "198.51.100.7", "203.0.113.9", "198.51.100.7"},
		{"a private-network peer's header is ignored", "10.0.0.5", "203.0.113.9", "10.0.0.5"},
		{"no header: the peer", "127.0.0.1", "", "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tt.peer + ":40000"
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := extract(req); got != tt.want {
				t.Fatalf("client address %q, want %q", got, tt.want)
			}
		})
	}

	// nginx on another host: its address is trusted when configured
	// (TRUSTED_PROXIES), and only its.
	proxies, err := parseProxies("10.231.1.1, 192.0.2.0/28")
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	scaleOut.set(&cfg, func(s *scaleOutSettings) { s.TrustedProxies = proxies })
	remote := behindNginx(cfg).IPExtractor
	for _, tt := range []struct{ peer, want string }{
		{"10.231.1.1", "203.0.113.9"}, {"192.0.2.14", "203.0.113.9"}, {"127.0.0.1", "203.0.113.9"},
		{"10.231.1.2", "10.231.1.2"}, {"192.0.2.16", "192.0.2.16"},
	} {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tt.peer + ":40000"
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		if got := remote(req); got != tt.want {
			t.Errorf("TRUSTED_PROXIES=10.231.1.1,192.0.2.0/28, peer %s: client %q, want %q", tt.peer, got, tt.want)
		}
	}
	if _, err := parseProxies("10.0.0.300"); err == nil {
		t.Error("parseProxies took 10.0.0.300")
	}

	ta := newTestApp(t, scaleOutStage)
	const limit = 3
	ta.lim.addrs = guard.NewThrottle(limit, failureWindow)
	for i := range limit {
		rec := ta.postFrom(t, "127.0.0.1", "/login", login("nobody"+strconv.Itoa(i), "wrong password"), "X-Forwarded-For", "203.0.113.9")
		if rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("failure %d: status %d, want 422", i+1, rec.Code)
		}
	}
	if rec := ta.postFrom(t, "127.0.0.1", "/login", login("someone", "wrong password"), "X-Forwarded-For", "203.0.113.9"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the client's address through nginx: status %d, want 429", rec.Code)
	}
	if rec := ta.postFrom(t, "127.0.0.1", "/login", login("someone", "wrong password"), "X-Forwarded-For", "203.0.113.10"); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("another client through the same nginx: status %d, want 422 (nginx's address was throttled)", rec.Code)
	}
}

// Pages at stage 7 link photo files by key, which nginx serves; a photo
// without a valid key falls back to the app's route.
func TestStage7LinksImagesByKey(t *testing.T) {
	url := behindNginx(Config{}).ImageURL
	if got := url(5, "abcdef12", models.Thumbnail); got != "/files/ab/abcdef12_thumb.jpg" {
		t.Errorf("thumbnail URL %q", got)
	}
	if got := url(5, "abcdef12", models.Original); got != "/files/ab/abcdef12.jpg" {
		t.Errorf("image URL %q", got)
	}
	if got := url(5, "../x", models.Original); got != "/photos/5/image" {
		t.Errorf("bad key: URL %q, want the app's route", got)
	}
}

func TestStage7RefusesToStartWithoutNginx(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg := Config{Stage: scaleOutStage, Addr: "127.0.0.1:0"}
	scaleOut.set(&cfg, func(s *scaleOutSettings) { s.Instances = 2 })
	err := serveTopology(context.Background(), cfg, nil)
	var missing NginxMissingError
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "apt-get install nginx-light") {
		t.Fatalf("got %v, want the refusal that says how to install nginx", err)
	}
}

// The whole topology, as `flickrkillr serve --stage 7` runs it: a session
// made through nginx is valid on every instance; photo files come from
// nginx, never reaching an app; an instance killed with SIGKILL mid-traffic
// costs no GET and no session and is back within 5 s; Ctrl-C (SIGINT)
// stops every process and frees every port.
func TestStage7Topology(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts nginx, Redis and two instances")
	}
	needCommands(t, "nginx")
	redisURL := topologyRedis(t)
	dsn := modeltest.NewDB(t, stageSchema(t, scaleOutStage))
	// PgBouncer is on by default; without it installed (outside CI, where
	// scripts/test.sh installs it) this test runs the instances straight
	// to PostgreSQL rather than not at all.
	pgbouncer := "PGBOUNCER="
	if _, err := exec.LookPath("pgbouncer"); err != nil && os.Getenv("CI") == "" {
		pgbouncer = "PGBOUNCER=0"
	}
	// One image-worker process: the upload below is made into images there.
	sup, addr, admin := serveCommand(t, dsn, []string{"--stage", "7", "--instances", "2", "--worker-procs", "1"},
		"REDIS_URL="+redisURL, "LOG_LEVEL=debug", "WORKER_PROCS=", "WORKERS=", pgbouncer)
	logs, exited := runTopology(t, sup, admin, 60*time.Second, "the topology to serve")
	base := "http://" + addr
	waitFor(t, 30*time.Second, "the topology to serve through nginx", func() bool {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK && res.Header.Get("Server") == "nginx"
	})
	topo := readTopology(t, admin)
	insts := topo.instances()
	if len(insts) != 2 {
		t.Fatalf("%d instances in /topology.json, want 2", len(insts))
	}

	jar, _ := cookiejar.New(nil)
	alice := &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	alice.signup("alice")
	res := alice.upload(map[string]string{"title": "Harbor", "tags": "sea"}, "harbor.jpg", testJPEG(t, 640, 480))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")

	t.Run("a session made through nginx is valid on every instance", func(t *testing.T) {
		for _, in := range insts {
			res := (&browser{t: t, base: "http://" + in.Addr, c: alice.c}).get("/upload")
			if res.Status != http.StatusOK {
				t.Errorf("instance %s: /upload answered %d, want 200 (logged in)", in.Name, res.Status)
			}
		}
	})

	t.Run("photo files come from nginx", func(t *testing.T) {
		alice := &browser{t: t, base: base, c: alice.c}
		// With a queue below (stage 6) the page shows a placeholder until a
		// worker has made the files; then it links them where nginx serves them.
		files := regexp.MustCompile(`src="(/files/[^"]+\.jpg)"`)
		var page response
		var m []string
		waitFor(t, 20*time.Second, "the photo page to link its /files/ image", func() bool {
			page = alice.get(photo)
			m = files.FindStringSubmatch(page.Body)
			return page.Status == http.StatusOK && m != nil
		})
		if page.Header.Get("X-Upstream") == "" {
			t.Error("a page through nginx has no X-Upstream header")
		}
		img := alice.get(m[1])
		mustStatus(t, img, http.StatusOK)
		if img.Header.Get("Server") != "nginx" || img.Header.Get("X-Upstream") != "" || img.Header.Get("Content-Type") != "image/jpeg" ||
			!strings.Contains(img.Header.Get("Cache-Control"), "immutable") || len(img.Body) < 100 {
			t.Errorf("%s: headers %v, %d bytes; want nginx's own answer, a JPEG cached as immutable", m[1], img.Header, len(img.Body))
		}
		css := alice.get("/static/style.css")
		mustStatus(t, css, http.StatusOK)
		if css.Header.Get("X-Upstream") != "" {
			t.Error("the stylesheet came from an instance")
		}
		mustStatus(t, alice.get(photo+"/image"), http.StatusOK) // old links still work, through an instance
		// The instances' log lines arrive through their pipes: wait for the
		// lines of the page and of the image requested after everything else.
		waitFor(t, 10*time.Second, "the instances' log lines for the photo page and its image", func() bool {
			l := logs.String()
			return strings.Contains(l, "path="+photo+" ") && strings.Contains(l, "path="+photo+"/image ")
		})
		if l := logs.String(); !strings.Contains(l, "path="+photo+" ") || strings.Contains(l, "path=/files/") || strings.Contains(l, "path=/static/") {
			t.Errorf("want the instances' debug log to show the page but not the files; log:\n%s", l)
		}
	})

	t.Run("a same-origin POST passes nginx with or without Sec-Fetch-Site; a cross-origin one does not", func(t *testing.T) {
		// A wrong password is 422 once the cross-origin check has let the
		// POST through, 403 when it refused it.
		c := &http.Client{Timeout: 10 * time.Second}
		post := func(headers ...string) int {
			req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(login("alice", "not her password").Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for i := 0; i < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return res.StatusCode
		}
		for _, tt := range []struct {
			name    string
			headers []string
			want    int
		}{
			{"same origin, Origin only (older browsers, tools)", []string{"Origin", base}, http.StatusUnprocessableEntity},
			{"same origin with Sec-Fetch-Site", []string{"Origin", base, "Sec-Fetch-Site", "same-origin"}, http.StatusUnprocessableEntity},
			{"cross origin, Origin only", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
			{"cross origin with Sec-Fetch-Site", []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
			{"the same host on another port", []string{"Origin", "http://127.0.0.1:1"}, http.StatusForbidden},
		} {
			if got := post(tt.headers...); got != tt.want {
				t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
			}
		}
	})

	t.Run("an instance killed mid-traffic costs no GET and no session", func(t *testing.T) {
		tr := startTraffic(base, jar, photo, false)
		tr.waitForMore(t, 20, "traffic to flow before the kill")
		victim := insts[0]
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		var back time.Duration
		for time.Since(killed) < 10*time.Second {
			now := readTopology(t, admin)
			if in := now.instance(victim.Name); in.PID != victim.PID && in.Up && ready(in.Addr) {
				back = time.Since(killed)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if back > 0 {
			tr.waitForMore(t, 40, "traffic on the restarted instance too")
		}
		requests, failures, first := tr.stop()
		if back == 0 || back > 5*time.Second {
			t.Errorf("the killed instance was back after %s, want within 5 s", back)
		}
		if requests < 20 || failures != 0 {
			t.Errorf("%d of %d GETs failed (first: %v), want 0", failures, requests, first)
		}
		if now := readTopology(t, admin).instance(victim.Name); now.Restarts != 1 || now.LastExit != "signal: killed" {
			t.Errorf("the topology says %+v, want one restart after signal: killed", now)
		}
		t.Logf("%d GETs, %d failed; the instance was back in %s", requests, failures, back.Round(time.Millisecond))
	})

	t.Run("SIGHUP restarts every instance without a failed GET or POST", func(t *testing.T) {
		before := readTopology(t, admin)
		tr := startTraffic(base, jar, photo, true)
		tr.waitForMore(t, 20, "traffic to flow before the SIGHUP")
		sup.Process.Signal(syscall.SIGHUP)
		waitFor(t, 30*time.Second, "every instance to be restarted and ready", func() bool {
			now := readTopology(t, admin)
			for _, in := range before.instances() {
				if n := now.instance(in.Name); n.PID == in.PID || !n.Up || !ready(n.Addr) {
					return false
				}
			}
			return strings.Contains(logs.String(), "rolling restart done")
		})
		tr.waitForMore(t, 20, "traffic on the restarted instances")
		requests, failures, first := tr.stop()
		if requests < 20 || failures != 0 {
			t.Errorf("%d of %d requests failed (first: %v), want 0", failures, requests, first)
		}
		t.Logf("%d requests (GETs and POSTs) during the rolling restart, %d failed", requests, failures)
	})

	t.Run("the supervisor's metrics are every instance's", func(t *testing.T) {
		res, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, in := range insts {
			want := fmt.Sprintf(`flickrkillr_instance_up{instance=%q} 1`, in.Name)
			if !strings.Contains(string(body), want) || !regexp.MustCompile(`http_requests_total\{[^}]*instance="`+in.Name+`"`).Match(body) {
				t.Errorf("the supervisor's /metrics lacks %s's series (%s, http_requests_total)", in.Name, want)
			}
		}
		page := (&browser{t: t, base: "http://" + admin, c: http.DefaultClient}).get("/topology")
		mustStatus(t, page, http.StatusOK)
		mustContain(t, page, "nginx", "<td>i1</td>", "<td>i2</td>", "<td>up</td>")
		if redisURL == "" { // the topology's own two: a durable one, and a cache one that evicts
			mustContain(t, page, "redis-server", "durable Redis", "redis-cache-server", "cache Redis", "Redis, by role")
			if !regexp.MustCompile(`flickrkillr_redis_used_memory_bytes\{[^}]*redis="redis-cache"`).Match(body) {
				t.Error("the supervisor's /metrics lacks the cache Redis's memory")
			}
		}
	})

	t.Run("the worker process is in /topology and its metrics on the dashboard", func(t *testing.T) {
		w := readTopology(t, admin).instance("w1")
		if w.Role != "image worker" || !w.Up || w.Admin == "" {
			t.Fatalf("/topology.json shows w1 as %+v, want an image worker, up, with an operator listener", w)
		}
		own := (&browser{t: t, base: "http://" + w.Admin, c: http.DefaultClient}).get("/metrics")
		mustStatus(t, own, http.StatusOK)
		mustContain(t, own, "flickrkillr_queue_jobs", "process_cpu_seconds_total")
		var body string
		waitFor(t, 10*time.Second, "the supervisor's /metrics to carry w1's series", func() bool {
			res := (&browser{t: t, base: "http://" + admin, c: http.DefaultClient}).get("/metrics")
			body = res.Body
			return strings.Contains(body, `process_cpu_seconds_total{instance="w1"}`) && strings.Contains(body, `flickrkillr_instance_up{instance="w1"} 1`)
		})
		dash := (&browser{t: t, base: "http://" + admin, c: http.DefaultClient}).get("/dashboard/data.json")
		mustContain(t, dash, `"w1"`) // its series in the CPU-by-process panel
		page := (&browser{t: t, base: "http://" + admin, c: http.DefaultClient}).get("/topology")
		mustContain(t, page, "<td>w1</td>", "image worker")
	})

	t.Run("SIGINT stops every process and frees every port", func(t *testing.T) {
		pids := descendants(sup.Process.Pid)
		if len(pids) < 4 { // two instances, nginx's master and a worker (and Redis)
			t.Fatalf("the supervisor has %d descendants %v, want at least 4", len(pids), pids)
		}
		sup.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the supervisor exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the supervisor did not stop within 20 s")
		}
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("process %d outlived the supervisor", pid)
			}
		}
		addrs := []string{addr, admin}
		for _, in := range topo.instances() {
			addrs = append(addrs, in.Addr, in.Admin)
		}
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				t.Errorf("port %s is still taken: %v", a, err)
				continue
			}
			ln.Close()
		}
	})
}

// traffic is four clients looping over requests through nginx until stop;
// any error or a status other than the one wanted is a failure. Stage 7's
// and stage 8's tests drive it (startTraffic, startAnonymousTraffic).
type traffic struct {
	stopc                    chan struct{}
	wg                       sync.WaitGroup
	requests, failures, hits atomic.Int64
	first                    atomic.Value
}

// runTraffic starts four clients sharing c; client w sends next(i) for i =
// w, w+1, and so on, wanting the status next returns with it. hits counts
// the answers hit says yes to (nil: none).
func runTraffic(c *http.Client, next func(i int) (req *http.Request, want int), hit func(*http.Response) bool) *traffic {
	tr := &traffic{stopc: make(chan struct{})}
	for w := range 4 {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := w; ; i++ {
				select {
				case <-tr.stopc:
					return
				default:
				}
				tr.requests.Add(1)
				req, want := next(i)
				res, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if hit != nil && hit(res) {
						tr.hits.Add(1)
					}
					if res.StatusCode != want {
						err = fmt.Errorf("%s %s: status %d, want %d", res.Request.Method, res.Request.URL.Path, res.StatusCode, want)
					}
				}
				if err != nil {
					tr.failures.Add(1)
					tr.first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	return tr
}

// startTraffic is a logged-in visitor (jar) reading pages and, with posts,
// toggling a favorite.
func startTraffic(base string, jar http.CookieJar, photo string, posts bool) *traffic {
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	paths := []string{"/upload", photo, "/"}
	return runTraffic(c, func(i int) (*http.Request, int) {
		if posts && i%4 == 3 {
			action := []string{"add", "remove"}[i/4%2]
			req, _ := http.NewRequest(http.MethodPost, base+photo+"/favorite", strings.NewReader(url.Values{"action": {action}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			// As a browser does, send a POST again when a reused connection
			// was closed before any answer (nginx's old workers close their
			// idle connections at a reload); Go does so for requests marked
			// replayable, which toggling a favorite to a state is.
			req.Header.Set("Idempotency-Key", fmt.Sprint(i))
			return req, http.StatusSeeOther
		}
		req, _ := http.NewRequest(http.MethodGet, base+paths[i%len(paths)], nil)
		return req, http.StatusOK // a 303 to /login would be a lost session
	}, nil)
}

// waitForMore waits until n more requests have been sent than when it was
// called: the tests wait on traffic having happened, not on a sleep that a
// busy machine can outrun.
func (tr *traffic) waitForMore(t *testing.T, n int64, what string) {
	t.Helper()
	from := tr.requests.Load()
	waitFor(t, 60*time.Second, what, func() bool { return tr.requests.Load() >= from+n })
}

// stop ends the traffic: requests sent, failed, and the first failure.
func (tr *traffic) stop() (requests, failures int64, first any) {
	close(tr.stopc)
	tr.wg.Wait()
	return tr.requests.Load(), tr.failures.Load(), tr.first.Load()
}

// topologyFile is /topology.json as the tests read it.
type topologyFile struct {
	Processes []topologyProcFile `json:"processes"`
}

type topologyProcFile struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	PID      int    `json:"pid"`
	Up       bool   `json:"up"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"last_exit"`
	Addr     string `json:"addr"`
	Admin    string `json:"admin"`
}

func (tf topologyFile) instances() []topologyProcFile {
	var out []topologyProcFile
	for _, p := range tf.Processes {
		if p.Role == "app instance" {
			out = append(out, p)
		}
	}
	return out
}

func (tf topologyFile) instance(name string) topologyProcFile {
	for _, p := range tf.Processes {
		if p.Name == name {
			return p
		}
	}
	return topologyProcFile{}
}

func readTopology(t *testing.T, admin string) topologyFile {
	t.Helper()
	res, err := http.Get("http://" + admin + "/topology.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tf topologyFile
	if err := json.NewDecoder(res.Body).Decode(&tf); err != nil {
		t.Fatal(err)
	}
	return tf
}

// descendants lists every process below pid (/proc's parent links).
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

// buildFlickrkillr builds the command (the supervisor re-executes itself
// as each instance, which the test binary cannot do).
func buildFlickrkillr(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	exe := filepath.Join(t.TempDir(), "flickrkillr")
	cmd := exec.Command(goTool, "build", "-o", exe, ".")
	cmd.Dir = ".." // the module's root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// topologyRedis is the Redis URL the tests' topologies use: REDIS_URL's,
// or "" where the supervisor starts a redis-server of its own. Without
// either it skips the test: the real-Redis pass of scripts/test.sh runs it.
func topologyRedis(t *testing.T) string {
	t.Helper()
	u := testRedisURL(t)
	if u == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Skip("redis-server is not installed (the real-Redis pass of scripts/test.sh runs this test)")
		}
	}
	return u
}

// stageSchema is the schema version stage's code needs.
func stageSchema(t *testing.T, stage int) int64 {
	t.Helper()
	schema, err := SchemaFor(stage)
	if err != nil {
		t.Fatal(err)
	}
	return schema
}

// serveCommand is `flickrkillr serve` with args, built from this tree, on
// database dsn, listening on free ports (addr for nginx, admin for the
// operator listener), in a folder of the test's own that holds its data.
// Its environment is the test's but for the settings its flags give, which
// it clears, and env.
func serveCommand(t *testing.T, dsn string, args []string, env ...string) (sup *exec.Cmd, addr, admin string) {
	t.Helper()
	exe := buildFlickrkillr(t)
	work := t.TempDir()
	addr, admin = mustFreeAddr(t), mustFreeAddr(t)
	sup = exec.Command(exe, append(append([]string{"serve"}, args...), "--addr", addr, "--admin-addr", admin)...)
	sup.Dir = work
	sup.Env = append(append(os.Environ(), "DATABASE_URL="+dsn, "DATA_DIR="+filepath.Join(work, "data"),
		"STAGE=", "INDEXES=", "INSTANCES=", "INSTANCE_CPUS=", "DB_LATENCY=", "METRICS="), env...)
	return sup, addr, admin
}

// runTopology starts sup, a `serve` command whose operator listener is
// admin, with its output in the log it returns, and waits up to within for
// that listener, which starts last, to answer; the supervisor exiting
// first fails the test. exited has its exit, for a test that stops it. At the test's end it stops the supervisor with
// SIGINT, as Ctrl-C does (it stops every process it started; SIGKILL after
// a minute), and shows its log if the test failed.
func runTopology(t *testing.T, sup *exec.Cmd, admin string, within time.Duration, what string) (logs *syncBuffer, exited <-chan error) {
	t.Helper()
	logs = &syncBuffer{}
	sup.Stdout, sup.Stderr = logs, logs
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sup.Wait() }()
	t.Cleanup(func() {
		if sup.ProcessState == nil {
			sup.Process.Signal(syscall.SIGINT)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				sup.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("the topology's log:\n%s", logs.String())
		}
	})
	waitFor(t, within, what, func() bool {
		select {
		case err := <-done:
			t.Fatalf("the supervisor exited: %v", err)
		default:
		}
		res, err := http.Get("http://" + admin + "/topology.json")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return logs, done
}

// syncBuffer is a bytes.Buffer that a process's two pipes can write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A later stage adds to the topology by registration alone: a stage N+1
// registered here with a topologyPart and a panel finds both in the options
// the supervisor runs with, and stage N's options have neither.
func TestATopologyPartReachesTheSupervisor(t *testing.T) {
	top := Stages()[len(Stages())-1]
	n := top.Number + 1
	registerForTest(t, Stage{
		Number: n, Name: "test-topology", Summary: "a stage a test registers", Topology: true,
		Parts: []any{topologyPart(func(cfg Config, o *topology.Options) {
			o.Attrs = append(o.Attrs, "test_part", cfg.Stage)
		})},
		Panels: func(*obs.Metrics) []obs.Panel { return []obs.Panel{{ID: "testtopology", Title: "A test's panel"}} },
	})
	for _, stage := range []int{top.Number, n} {
		cfg := Config{Stage: stage, DataDir: t.TempDir(), Addr: "127.0.0.1:0"}
		scaleOut.set(&cfg, func(s *scaleOutSettings) { s.Instances, s.NoPgBouncer = 2, true })
		o, err := supervisorOptions(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		attrs := fmt.Sprint(o.Attrs...)
		if has := strings.Contains(attrs, "test_part"); has != (stage == n) {
			t.Errorf("stage %d: the options' attrs %q; the part belongs to stage %d alone", stage, attrs, n)
		}
		if has := hasPanel(o.Panels, "testtopology"); has != (stage == n) {
			t.Errorf("stage %d: the supervisor's dashboard has the new stage's panel: %v", stage, has)
		}
	}
}
