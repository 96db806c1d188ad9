package app

import (
	"bufio"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"flickrkillr/models/modeltest"
)

// frontTTL is the TTL the test's instances fill with (FRONT_CACHE_TTL):
// short, so that the TTL bound is seen within the test.
const frontTTL = 3 * time.Second

// The whole stage 8 topology as `flickrkillr serve --stage 8` runs it, with
// real nginx, memcached, Redis and PostgreSQL.
func TestStage8FrontCache(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts nginx, memcached, Redis and two instances")
	}
	needCommands(t, "nginx", "memcached", "redis-server")
	base, admin := startFrontTopology(t)
	mcAddr := memcachedProc(t, admin).Addr
	mc := memcache.New(mcAddr)

	jar, _ := cookiejar.New(nil)
	alice := &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	alice.signup("alice")
	res := alice.upload(map[string]string{"title": "Harbor", "tags": "sea"}, "harbor.jpg", testJPEG(t, 64, 48))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")
	anon := &browser{t: t, base: base, c: &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	// fromMemcached waits until an anonymous GET of path is answered from
	// memcached (the first fills it; a stage 6 photo first shows its
	// placeholder, and the worker's finish deletes it again).
	fromMemcached := func(t *testing.T, path string) response {
		t.Helper()
		var r response
		waitFor(t, 30*time.Second, path+" to be answered from memcached", func() bool {
			r = anon.get(path)
			return r.Header.Get("X-Front-Cache") == "memcached"
		})
		return r
	}

	t.Run("an anonymous GET is answered from memcached with the app's headers", func(t *testing.T) {
		for _, path := range []string{photo, "/", "/users/alice", "/tags/sea"} {
			live := anon.get(path)
			hit := fromMemcached(t, path)
			if hit.Status != http.StatusOK || hit.Body == "" {
				t.Errorf("%s: status %d from memcached", path, hit.Status)
			}
			if got := hit.Header.Get("Content-Type"); !strings.EqualFold(got, "text/html; charset=utf-8") {
				t.Errorf("%s: Content-Type %q, want text/html; charset=utf-8", path, got)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"} {
				if hit.Header.Get(h) != live.Header.Get(h) || hit.Header.Get(h) == "" {
					t.Errorf("%s: %s is %q from memcached, %q from the app", path, h, hit.Header.Get(h), live.Header.Get(h))
				}
			}
			if st := hit.Header.Get("Server-Timing"); !strings.Contains(st, "front cache") {
				t.Errorf("%s: Server-Timing %q does not say front cache", path, st)
			}
			if up := hit.Header.Get("X-Upstream"); up != "" {
				t.Errorf("%s: X-Upstream %q on a page from memcached", path, up)
			}
		}
		// No instance saw them: the instances counted one request per
		// answer that did not come from memcached (the page may expire
		// during the loop: the TTL is short), and none for the rest.
		fromMemcached(t, photo)
		before := instanceRequests(t, admin)
		hits, others := 0, 0
		for range 20 {
			if r := anon.get(photo); r.Header.Get("X-Front-Cache") == "memcached" {
				hits++
			} else {
				others++
			}
		}
		if after := instanceRequests(t, admin); after-before != float64(others) || hits == 0 {
			t.Errorf("the instances counted %v requests during %d GETs from memcached and %d through them, want %d", after-before, hits, others, others)
		}
		// The dashboard's figures: memcached's hits (the supervisor reads its
		// stats) and the instances' fills.
		if hits := metricSum(t, admin, "flickrkillr_memcached_get_hits"); hits < 20 {
			t.Errorf("flickrkillr_memcached_get_hits is %v after 20 hits", hits)
		}
		if fills := metricSum(t, admin, `flickrkillr_front_cache_ops_total{op="fill",result="ok"`); fills < 4 {
			t.Errorf("the instances' fills are %v after filling 4 pages", fills)
		}
	})

	t.Run("a logged-in GET is never answered from memcached nor stored", func(t *testing.T) {
		fromMemcached(t, photo)
		r := alice.get(photo)
		if got := r.Header.Get("X-Front-Cache"); got != "bypass" || !strings.Contains(r.Body, "alice") {
			t.Errorf("alice's GET: X-Front-Cache %q, want bypass (her page)", got)
		}
		mc.Delete("page:" + photo)
		alice.get(photo)
		if _, err := mc.Get("page:" + photo); err != memcache.ErrCacheMiss {
			t.Errorf("after alice's GET the key holds a page (err %v)", err)
		}
		// Any session cookie, even one the app does not know, is never stored.
		req, _ := http.NewRequest(http.MethodGet, base+photo, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookieName, Value: "not-a-session"})
		anon.do(req)
		if _, err := mc.Get("page:" + photo); err != memcache.ErrCacheMiss {
			t.Errorf("after a GET with a session cookie the key holds a page (err %v)", err)
		}
	})

	t.Run("a comment shows on the next anonymous GET", func(t *testing.T) {
		for _, path := range []string{photo, "/", "/users/alice", "/tags/sea"} {
			fromMemcached(t, path)
		}
		mustStatus(t, alice.post(photo+"/comments", url.Values{"body": {"Lovely light on the water"}}), http.StatusSeeOther)
		if r := anon.get(photo); !strings.Contains(r.Body, "Lovely light on the water") {
			t.Errorf("the next anonymous GET (%s) lacks the comment", r.Header.Get("X-Front-Cache"))
		}
		// A new photo: home, the owner's page and the tag's page, at once.
		res := alice.upload(map[string]string{"title": "Lighthouse", "tags": "sea"}, "light.jpg", testJPEG(t, 64, 48))
		mustStatus(t, res, http.StatusSeeOther)
		for _, path := range []string{"/", "/users/alice", "/tags/sea"} {
			if r := anon.get(path); !strings.Contains(r.Body, "Lighthouse") {
				t.Errorf("the next anonymous GET of %s (%s) lacks the new photo", path, r.Header.Get("X-Front-Cache"))
			}
		}
	})

	t.Run("a filled page lives no longer than the TTL", func(t *testing.T) {
		fromMemcached(t, photo)
		filled := time.Now()
		waitFor(t, 60*time.Second, "the page to expire", func() bool {
			_, err := mc.Get("page:" + photo)
			return err == memcache.ErrCacheMiss
		})
		if lived := time.Since(filled); lived > frontTTL+30*time.Second {
			t.Errorf("the page lived %s with a TTL of %s", lived, frontTTL)
		}
	})

	t.Run("a forged Host or an unknown query never changes the next anonymous page", func(t *testing.T) {
		mc.Delete("page:" + photo)
		req, _ := http.NewRequest(http.MethodGet, base+photo, nil)
		req.Host = "evil.example"
		anon.do(req) // a miss: the instance renders and fills
		r := anon.get(photo + "?utm=%3Cb%3Eevil%3C/b%3E")
		if got := r.Header.Get("X-Front-Cache"); got != "bypass" {
			t.Errorf("an unknown query was %q, want bypass", got)
		}
		page := fromMemcached(t, photo)
		if strings.Contains(page.Body, "evil") {
			t.Error("the next anonymous visitor's page mentions the forged Host or query")
		}
	})

	t.Run("memcached killed under load costs no request, and hits come back", func(t *testing.T) {
		fromMemcached(t, photo)
		victim := memcachedProc(t, admin)
		tr := startAnonymousTraffic(base, []string{photo, "/", "/tags/sea", "/users/alice"})
		tr.waitForMore(t, 50, "traffic before the kill")
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "memcached to be restarted", func() bool {
			p := memcachedProc(t, admin)
			return p.PID != victim.PID && p.Up
		})
		tr.waitForMore(t, 50, "traffic after the restart")
		waitFor(t, 30*time.Second, "hits again", func() bool { return tr.hits.Load() > 0 && anon.get(photo).Header.Get("X-Front-Cache") == "memcached" })
		n, failed, first := tr.stop()
		if failed > 0 {
			t.Errorf("%d of %d requests failed; the first: %v", failed, n, first)
		}
	})
}

// Stage 8 with --worker-procs: a worker process finishes photos, and deletes
// the pages a finished photo changes from memcached as an instance's
// workers do. With the worker stopped, an upload's pages are filled while
// the photo is processing (the placeholder); once the worker has made its
// images, the next anonymous GETs show the photo, not the placeholder until
// the TTL (ten minutes here).
func TestStage8WorkerProcsDeleteAFinishedPhotosPages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts nginx, memcached, Redis, two instances and a worker process")
	}
	needCommands(t, "nginx", "memcached", "redis-server")
	base, admin := startFrontTopologyTTL(t, 10*time.Minute, "--worker-procs", "1")
	var worker topologyProcFile
	for _, p := range readTopology(t, admin).Processes {
		if p.Name == "w1" {
			worker = p
		}
	}
	if worker.PID == 0 || !worker.Up {
		t.Fatalf("no worker process w1 up in /topology.json: %+v", worker)
	}
	// The worker is stopped while the photo is uploaded and its pages filled.
	if err := syscall.Kill(worker.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			syscall.Kill(worker.PID, syscall.SIGCONT)
			stopped = false
		}
	}
	t.Cleanup(cont)

	jar, _ := cookiejar.New(nil)
	alice := &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	alice.signup("alice")
	res := alice.upload(map[string]string{"title": "Harbor", "tags": "sea"}, "harbor.jpg", testJPEG(t, 64, 48))
	mustStatus(t, res, http.StatusSeeOther)
	photo := res.Header.Get("Location")
	anon := &browser{t: t, base: base, c: &http.Client{Timeout: 10 * time.Second}}
	const placeholder = "photo-processing.svg"
	pages := []string{photo, "/", "/users/alice", "/tags/sea"}
	for _, path := range pages {
		waitFor(t, 30*time.Second, path+" to be answered from memcached", func() bool {
			return anon.get(path).Header.Get("X-Front-Cache") == "memcached"
		})
		if r := anon.get(path); !strings.Contains(r.Body, placeholder) {
			t.Fatalf("%s from memcached does not show the placeholder of the processing photo", path)
		}
	}

	cont()
	waitFor(t, 60*time.Second, "the worker process to make the photo's images", func() bool {
		r := alice.get(photo) // a session cookie: never from memcached
		return r.Status == http.StatusOK && !strings.Contains(r.Body, placeholder)
	})
	for _, path := range pages {
		if r := anon.get(path); strings.Contains(r.Body, placeholder) {
			t.Errorf("%s still shows the placeholder to an anonymous visitor (X-Front-Cache %s) after the worker finished the photo",
				path, r.Header.Get("X-Front-Cache"))
		}
	}
}

// startFrontTopology runs `serve --stage 8` with args on a database of its
// own until the test ends, and returns nginx's URL and the operator listener.
func startFrontTopology(t *testing.T, args ...string) (base, admin string) {
	t.Helper()
	return startFrontTopologyTTL(t, frontTTL, args...)
}

// startFrontTopologyTTL is startFrontTopology with the pages' TTL.
func startFrontTopologyTTL(t *testing.T, ttl time.Duration, args ...string) (base, admin string) {
	t.Helper()
	dsn := modeltest.NewDB(t, stageSchema(t, frontCacheStage))
	sup, addr, admin := serveCommand(t, dsn, append([]string{"--stage", "8", "--instances", "2"}, args...),
		"REDIS_URL=", "FRONT_CACHE_TTL="+ttl.String(), "FRONT_CACHE=")
	runTopology(t, sup, admin, 90*time.Second, "the topology to serve through nginx") // SIGINT at the end stops nginx, the instances, Redis and memcached
	return "http://" + addr, admin
}

// --front-cache proxy: nginx's proxy_cache in memcached's place, one flag
// apart: no memcached runs, an anonymous page is a HIT after its first
// answer, a logged-in one is never taken from the cache.
func TestStage8ProxyMicrocache(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts nginx, Redis and two instances")
	}
	needCommands(t, "nginx", "redis-server")
	base, admin := startFrontTopology(t, "--front-cache", "proxy")
	for _, p := range readTopology(t, admin).Processes {
		if p.Name == "memcached" {
			t.Errorf("memcached runs with --front-cache proxy: %+v", p)
		}
	}
	anon := &browser{t: t, base: base, c: &http.Client{Timeout: 10 * time.Second}}
	waitFor(t, 30*time.Second, "the home page to come from proxy_cache", func() bool {
		return anon.get("/").Header.Get("X-Front-Cache") == "HIT"
	})
	jar, _ := cookiejar.New(nil)
	alice := &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	alice.signup("alice")
	if r := alice.get("/"); r.Header.Get("X-Front-Cache") != "BYPASS" || !strings.Contains(r.Body, "alice") {
		t.Errorf("alice's home page: X-Front-Cache %q, want BYPASS and her page", r.Header.Get("X-Front-Cache"))
	}
	if r := anon.get("/?utm=x"); r.Header.Get("X-Front-Cache") != "BYPASS" {
		t.Errorf("an unknown query: X-Front-Cache %q, want BYPASS", r.Header.Get("X-Front-Cache"))
	}
}

// memcachedProc is memcached's line in /topology.json.
func memcachedProc(t *testing.T, admin string) topologyProcFile {
	t.Helper()
	for _, p := range readTopology(t, admin).Processes {
		if p.Name == "memcached" {
			return p
		}
	}
	t.Fatal("no memcached in /topology.json")
	return topologyProcFile{}
}

// instanceRequests sums the instances' http_requests_total (the supervisor
// scrapes them on each /metrics), but the scrapes' own.
func instanceRequests(t *testing.T, admin string) float64 {
	t.Helper()
	return metricSum(t, admin, "http_requests_total{")
}

// metricSum sums the supervisor's /metrics lines that start with prefix.
func metricSum(t *testing.T, admin, prefix string) float64 {
	t.Helper()
	return sumMetrics(t, admin, func(line string) bool {
		return strings.HasPrefix(line, prefix) && !strings.Contains(line, `route="/metrics"`)
	})
}

// sumMetrics sums the values of the supervisor's /metrics lines that keep
// takes (the instances' series, gathered).
func sumMetrics(t *testing.T, admin string, keep func(line string) bool) float64 {
	t.Helper()
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var sum float64
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); keep(line) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// startAnonymousTraffic is visitors without a session looping over paths;
// its hits are the answers from memcached.
func startAnonymousTraffic(base string, paths []string) *traffic {
	return runTraffic(&http.Client{Timeout: 10 * time.Second}, func(i int) (*http.Request, int) {
		req, _ := http.NewRequest(http.MethodGet, base+paths[i%len(paths)], nil)
		return req, http.StatusOK
	}, func(res *http.Response) bool { return res.Header.Get("X-Front-Cache") == "memcached" })
}
