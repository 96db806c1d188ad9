package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Result is everything a run measured, with what is needed to reproduce it.
type Result struct {
	Tool        string        `json:"tool"`
	Settings    Settings      `json:"settings"`
	Server      ServerInfo    `json:"server"`
	Machine     Machine       `json:"machine"`
	Started     time.Time     `json:"started"`
	Elapsed     float64       `json:"elapsed_s"`
	Interrupted bool          `json:"interrupted"`
	Routes      []RouteResult `json:"routes"`
	Total       RouteResult   `json:"total"`
}

// Settings are the options a run used.
type Settings struct {
	URL         string  `json:"url"`
	Scenario    string  `json:"scenario"`
	Mode        string  `json:"mode"` // closed or open
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Duration    string  `json:"duration"`
	ThinkTime   string  `json:"think_time"`
	Seed        uint64  `json:"seed"`
}

// ServerInfo is what /healthz said.
type ServerInfo struct {
	Status    string           `json:"status"`
	Stage     int              `json:"stage"`
	StageName string           `json:"stage_name"`
	PID       int              `json:"pid"`
	Rows      map[string]int64 `json:"rows"`
}

// Machine describes where the tool ran.
type Machine struct {
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// Run measures the server at o.URL. Cancelling ctx (Ctrl-C) stops early and
// still returns the partial result, marked Interrupted.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Scenario == "" {
		o.Scenario = "browse"
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	transport := &http.Transport{
		MaxIdleConns:        o.Concurrency * 2,
		MaxIdleConnsPerHost: o.Concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	info, err := probe(ctx, transport, o.URL)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Tool:   "flickrkillr loadtest",
		Server: info,
		Settings: Settings{URL: o.URL, Scenario: o.Scenario, Mode: "closed", Concurrency: o.Concurrency,
			Duration: o.Duration.String(), ThinkTime: o.ThinkTime.String(), Seed: o.Seed},
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)},
	}
	if o.Rate > 0 {
		res.Settings.Mode, res.Settings.Rate = "open", o.Rate
	}

	sc := scenarios[o.Scenario]
	setupClient := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	shared, err := sc.setup(ctx, setupClient, o, info)
	if err != nil {
		return nil, err
	}
	var reqs, errs atomic.Int64
	users := make([]*vuser, o.Concurrency)
	setupErrs := make(chan error, o.Concurrency)
	var wg sync.WaitGroup
	for i := range users {
		var jar http.CookieJar
		if sc.login != nil {
			jar, _ = cookiejar.New(nil)
		}
		vu := &vuser{
			id:   i,
			base: o.URL,
			client: &http.Client{Transport: transport, Jar: jar, Timeout: 60 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
			rng:    rand.New(rand.NewPCG(o.Seed, uint64(i))),
			rec:    newRecorder(),
			shared: shared,
			reqs:   &reqs,
			errs:   &errs,
		}
		users[i] = vu
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sc.login == nil {
				return
			}
			if err := sc.login(ctx, vu); err != nil {
				setupErrs <- err
			}
		}()
	}
	wg.Wait()
	close(setupErrs)
	if err := <-setupErrs; err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	res.Started = start.UTC()
	stopProgress := reportProgress(o.Progress, start, &reqs, &errs)

	var next atomic.Int64
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / o.Rate)
	}
	for _, vu := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if interval > 0 {
					// Open loop: each action has a slot on a fixed schedule and
					// its latency counts from that slot, however late we are.
					intended := start.Add(time.Duration(next.Add(1)-1) * interval)
					if !sleepUntil(runCtx, intended) {
						return
					}
					vu.intended = intended
				}
				sc.step(runCtx, vu)
				if o.ThinkTime > 0 && interval == 0 && !sleepUntil(runCtx, time.Now().Add(o.ThinkTime)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	res.Interrupted = ctx.Err() != nil
	if !res.Interrupted {
		elapsed = min(elapsed, o.Duration)
	}
	res.Elapsed = elapsed.Seconds()
	all := newRecorder()
	for _, vu := range users {
		all.merge(vu.rec)
	}
	res.Routes, res.Total = all.results(elapsed)
	return res, nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func reportProgress(fn func(Progress), start time.Time, reqs, errs *atomic.Int64) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := reqs.Load()
				fn(Progress{Elapsed: now.Sub(start), Requests: n, Errors: errs.Load(),
					RPS: float64(n-last) / now.Sub(lastT).Seconds()})
				last, lastT = n, now
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// probe reads /healthz?data=1: the server must answer before we start.
func probe(ctx context.Context, rt http.RoundTripper, base string) (ServerInfo, error) {
	var info ServerInfo
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz?data=1", nil)
	if err != nil {
		return info, err
	}
	res, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return info, fmt.Errorf("%w: %s: %v", ErrUnreachable, base, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return info, fmt.Errorf("%w: %s/healthz answered %s", ErrUnreachable, base, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return info, fmt.Errorf("%w: %s/healthz is not FlickrKillr's: %v", ErrUnreachable, base, err)
	}
	return info, nil
}

// vuser is one virtual user: its own cookie jar, random stream and statistics.
type vuser struct {
	id       int
	base     string
	client   *http.Client
	rng      *rand.Rand
	rec      *recorder
	shared   any
	reqs     *atomic.Int64
	errs     *atomic.Int64
	intended time.Time // open loop: when this action should have started
	body     bytes.Buffer
}

// check inspects a response; it returns an error for a wrong one.
type check func(res *http.Response, body []byte) error

// do sends one request, checks the answer and records it under route. A
// request cut off because the run ended is not counted.
func (vu *vuser) do(ctx context.Context, route string, req *http.Request, ok check) ([]byte, error) {
	start := time.Now()
	if !vu.intended.IsZero() {
		start, vu.intended = vu.intended, time.Time{}
	}
	res, err := vu.client.Do(req)
	vu.body.Reset()
	if err == nil {
		_, err = vu.body.ReadFrom(res.Body)
		res.Body.Close()
		if err == nil {
			err = ok(res, vu.body.Bytes())
		}
	}
	latency := time.Since(start)
	if ctx.Err() != nil && err != nil {
		return nil, err // the run's end, not the server's fault
	}
	vu.reqs.Add(1)
	if err != nil {
		vu.errs.Add(1)
	}
	vu.rec.record(route, latency, int64(vu.body.Len()), err)
	return vu.body.Bytes(), err
}

func (vu *vuser) get(ctx context.Context, route, path string, ok check) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, vu.base+path, nil)
	return vu.do(ctx, route, req, ok)
}

// statusIs checks the status and that the body holds every marker. Checks
// are built once (the package-level is… values), not per request.
func statusIs(code int, markers ...string) check {
	want := make([][]byte, len(markers))
	for i, m := range markers {
		want[i] = []byte(m)
	}
	return func(res *http.Response, body []byte) error {
		if res.StatusCode != code {
			return fmt.Errorf("status %d, want %d", res.StatusCode, code)
		}
		for i, m := range want {
			if !bytes.Contains(body, m) {
				return fmt.Errorf("body lacks %q", markers[i])
			}
		}
		return nil
	}
}

// The checks of the scenarios' requests.
var (
	isOK       = statusIs(http.StatusOK)
	isRedirect = statusIs(http.StatusSeeOther)
	isHome     = statusIs(http.StatusOK, "Recent photos", "Log out")
	isPhoto    = statusIs(http.StatusOK, `class="photo"`, "Log out")
	isUser     = statusIs(http.StatusOK, "member since", "Log out")
	isTag      = statusIs(http.StatusOK, "Photos tagged", "Log out")
)

// isJPEG checks an image answer.
func isJPEG(res *http.Response, body []byte) error {
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d, want 200", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "image/jpeg" || len(body) < 3 || body[0] != 0xff || body[1] != 0xd8 {
		return errors.New("not a JPEG")
	}
	return nil
}
