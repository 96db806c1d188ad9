package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"math/rand/v2"
	"net/http"
	"net/url"
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
	// SignIn is how the users' sign-ins went (nil when none signs in).
	SignIn *SignInResult `json:"sign_in,omitempty"`
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
	// Anonymous is the share of virtual users who browse without an
	// account (--anonymous), AnonymousUsers how many that made.
	Anonymous      float64 `json:"anonymous,omitempty"`
	AnonymousUsers int     `json:"anonymous_users,omitempty"`
}

// ServerInfo is what /healthz said.
type ServerInfo struct {
	Status    string           `json:"status"`
	Stage     int              `json:"stage"`
	StageName string           `json:"stage_name"`
	Indexes   bool             `json:"indexes"`
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
	setupClient, err := newClient(o.URL, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer setupClient.Close()
	info, err := probe(ctx, setupClient)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Tool:   "flickrkillr loadtest",
		Server: info,
		Settings: Settings{URL: o.URL, Scenario: o.Scenario, Mode: "closed", Concurrency: o.Concurrency,
			Duration: o.Duration.String(), ThinkTime: o.ThinkTime.String(), Seed: o.Seed, Anonymous: o.Anonymous},
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)},
	}
	if o.Rate > 0 {
		res.Settings.Mode, res.Settings.Rate = "open", o.Rate
	}

	sc := scenarios[o.Scenario]
	shared, err := sc.setup(ctx, setupClient, o, info)
	if err != nil {
		return nil, err
	}
	var reqs, errs atomic.Int64
	users := make([]*vuser, o.Concurrency)
	si := newSignIns()
	for i := range users {
		c, _ := newClient(o.URL, 60*time.Second)
		defer c.Close()
		vu := &vuser{
			id:        i,
			client:    c,
			rng:       rand.New(rand.NewPCG(o.Seed, uint64(i))),
			rec:       newRecorder(),
			shared:    shared,
			reqs:      &reqs,
			errs:      &errs,
			signIns:   si,
			anonymous: isAnonymous(i, o.Anonymous),
		}
		users[i] = vu
		switch {
		case vu.anonymous:
			res.Settings.AnonymousUsers++
		case sc.login != nil:
			si.users++
		}
	}

	// runCtx is the run: it ends o.Duration after the measured window opens
	// (or on Ctrl-C). The users sign in first, before the window; one that
	// the server keeps turning away keeps trying until the run ends, and
	// makes no page request until it is in.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var start time.Time // written before si.window is closed, read after
	var next atomic.Int64
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / o.Rate)
	}
	var wg, signing sync.WaitGroup
	failed := make(chan error, len(users))
	for _, vu := range users {
		wg.Add(1)
		signing.Add(1)
		go func() {
			defer wg.Done()
			if sc.login != nil && !vu.anonymous {
				if err := sc.login(runCtx, vu); err != nil {
					if runCtx.Err() == nil {
						failed <- err // before signing.Done: the run must see it
					}
					signing.Done()
					return
				}
			}
			signing.Done()
			select {
			case <-si.window:
			case <-runCtx.Done():
				return
			}
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
	// The sign-in phase: until every user is in, or for at most the run's
	// duration (a server that sheds most sign-ins); then the window opens
	// with the users who are in, and the others keep trying inside it.
	allIn := make(chan struct{})
	go func() { signing.Wait(); close(allIn) }()
	phaseStart := time.Now()
	phaseEnd := time.NewTimer(o.Duration)
	stopPhase := reportProgress(o.Progress, phaseStart, func() Progress {
		return Progress{SigningIn: true, Requests: si.attempts.Load(), Errors: si.errors.Load(), Shed: si.shed.Load(),
			SignedIn: si.before.Load(), SignInUsers: int64(si.users)}
	})
	defer stopPhase() // also on the early returns below; a second call does nothing
	select {
	case <-allIn:
	case <-phaseEnd.C:
	case err := <-failed:
		cancel()
		wg.Wait()
		return nil, err
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	}
	phaseEnd.Stop()
	stopPhase()
	si.phase = time.Since(phaseStart)

	if o.OnWindow != nil {
		o.OnWindow(true)
	}
	start = time.Now()
	res.Started = start.UTC()
	stopProgress := reportProgress(o.Progress, start, func() Progress {
		return Progress{Requests: reqs.Load(), Errors: errs.Load(), Waiting: int64(si.users) - si.before.Load() - si.during.Load()}
	})
	end := time.AfterFunc(o.Duration, cancel)
	defer end.Stop()
	close(si.window)
	wg.Wait()
	elapsed := time.Since(start)
	if o.OnWindow != nil {
		o.OnWindow(false)
	}
	stopProgress()
	if sc.teardown != nil {
		// Outside the measured window, and also after a Ctrl-C: the run
		// leaves the data set as it found it.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownWait)
		for _, vu := range users {
			wg.Add(1)
			go func() { defer wg.Done(); sc.teardown(cleanup, vu) }()
		}
		wg.Wait()
		cancel()
	}
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
	res.SignIn = si.result()
	return res, nil
}

// teardownWait bounds a scenario's teardown (the upload scenario waits there
// for the workers to process its photos: a burst can queue minutes of work).
const teardownWait = 5 * time.Minute

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

// reportProgress calls fn about once a second with what sample says, and
// the request rate since the last call, until stop.
func reportProgress(fn func(Progress), start time.Time, sample func() Progress) (stop func()) {
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
				p := sample()
				p.Elapsed, p.RPS = now.Sub(start), float64(p.Requests-last)/now.Sub(lastT).Seconds()
				fn(p)
				last, lastT = p.Requests, now
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// probe reads /healthz?data=1: the server must answer before we start.
func probe(ctx context.Context, c *client) (ServerInfo, error) {
	var info ServerInfo
	// Generous: a stage 0 server still busy with the scans of the requests
	// a warm-up cut off can take seconds to start one more process.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res response
	if err := c.do(ctx, http.MethodGet, "/healthz?data=1", nil, &res); err != nil {
		return info, fmt.Errorf("%w: %s: %v", ErrUnreachable, c.base(), err)
	}
	if res.status != http.StatusOK {
		return info, fmt.Errorf("%w: %s/healthz answered %d", ErrUnreachable, c.base(), res.status)
	}
	if err := json.Unmarshal(res.body, &info); err != nil {
		return info, fmt.Errorf("%w: %s/healthz is not FlickrKillr's: %v", ErrUnreachable, c.base(), err)
	}
	return info, nil
}

// vuser is one virtual user: its own connection and cookies, random stream
// and statistics.
type vuser struct {
	id       int
	client   *client
	res      response // the last answer; its buffers are reused
	rng      *rand.Rand
	rec      *recorder
	shared   any
	reqs     *atomic.Int64
	errs     *atomic.Int64
	intended time.Time // open loop: when this action should have started
	made     []string  // what the user created that the scenario's teardown removes
	faves    []string  // the writes scenario: photos the user favorited in the run and holds
	signIns  *signIns  // the run's sign-in state (signin.go)
	// anonymous users browse without an account: no sign-in, no writes
	// (anonymousMix).
	anonymous bool
}

// check inspects a response; it returns an error for a wrong one.
type check func(res *response) error

// do sends one request (a form, when not nil, is posted), checks the answer
// and records it under route. A request cut off because the run ended is not
// counted. The body returned is valid until the user's next request.
func (vu *vuser) do(ctx context.Context, route, method, path string, form url.Values, ok check) ([]byte, error) {
	return vu.timed(ctx, route, ok, func() error { return vu.client.do(ctx, method, path, form, &vu.res) })
}

// timed times send, checks its answer and records it under route (do's work).
func (vu *vuser) timed(ctx context.Context, route string, ok check, send func() error) ([]byte, error) {
	start := time.Now()
	if !vu.intended.IsZero() {
		start, vu.intended = vu.intended, time.Time{}
	}
	err := send()
	if err == nil {
		err = ok(&vu.res)
	}
	latency := time.Since(start)
	if ctx.Err() != nil && err != nil {
		return nil, err // the run's end, not the server's fault
	}
	vu.reqs.Add(1)
	if err != nil {
		vu.errs.Add(1)
	}
	vu.rec.record(route, latency, int64(len(vu.res.body)), err)
	vu.rec.recordTiming(route, vu.res.timing)
	vu.rec.recordFront(route, vu.res.front)
	return vu.res.body, err
}

func (vu *vuser) get(ctx context.Context, route, path string, ok check) ([]byte, error) {
	return vu.do(ctx, route, http.MethodGet, path, nil, ok)
}

func (vu *vuser) post(ctx context.Context, route, path string, form url.Values, ok check) ([]byte, error) {
	return vu.do(ctx, route, http.MethodPost, path, form, ok)
}

// statusIs checks the status and that the body holds every marker. Checks
// are built once (the package-level is… values), not per request.
func statusIs(code int, markers ...string) check {
	want := make([][]byte, len(markers))
	for i, m := range markers {
		want[i] = []byte(m)
	}
	return func(res *response) error {
		if res.status != code {
			return fmt.Errorf("status %d, want %d", res.status, code)
		}
		for i, m := range want {
			if !bytes.Contains(res.body, m) {
				return fmt.Errorf("body lacks %q", markers[i])
			}
		}
		return nil
	}
}

// The checks of the scenarios' requests.
var (
	isOK         = statusIs(http.StatusOK)
	isRedirect   = statusIs(http.StatusSeeOther)
	isHome       = statusIs(http.StatusOK, "Recent photos", "Log out")
	isPhoto      = statusIs(http.StatusOK, `class="photo"`, "Log out")
	isUser       = statusIs(http.StatusOK, "member since", "Log out")
	isTag        = statusIs(http.StatusOK, "Photos tagged", "Log out")
	isUploadForm = statusIs(http.StatusOK, `enctype="multipart/form-data"`, "Log out")
)

// isJPEG checks an image answer.
func isJPEG(res *response) error {
	if res.status != http.StatusOK {
		return fmt.Errorf("status %d, want 200", res.status)
	}
	if string(res.contentType) != "image/jpeg" || len(res.body) < 3 || res.body[0] != 0xff || res.body[1] != 0xd8 {
		return errors.New("not a JPEG")
	}
	return nil
}
