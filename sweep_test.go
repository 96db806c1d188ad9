package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"flickrkillr/app"
	"flickrkillr/loadtest"
	"flickrkillr/loadtest/sweep"
	"flickrkillr/migrations"
	"flickrkillr/models"
	"flickrkillr/models/modeltest"
	"flickrkillr/seed"
)

// The sweep runs this binary's migrate and serve: under `go test` that is the
// test binary, which acts as flickrkillr when this variable is set.
func TestMain(m *testing.M) {
	if os.Getenv("FLICKRKILLR_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

// The sweep on a tiny seed writes both ladders: the runs in the order that
// migrates least, stage 4 measured once for both, each run's schema as its
// /healthz says, the CPU of each side, the command once, and the control
// pair (its first run measured again at the end) with its spread. Structure and
// labels only, never timings.
func TestSweepWritesBothLaddersOnATinySeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server per run")
	}
	if !app.HasIndexSchema() {
		t.Skip("a build without the index migration has one ladder")
	}
	dsn, idx, addr := tinySeed(t)
	out, docs := t.TempDir(), t.TempDir()
	doc := filepath.Join(docs, "03-cache.md")
	os.WriteFile(doc, []byte("# Stage 3\n<!-- sweep: step 3 -->\n<!-- /sweep -->\n"), 0o644)
	// As `make loadtest-sweep SWEEP_FLAGS="… --out …"` calls it: --out twice.
	before := rowCounts(t, dsn)
	sr := runSweep(t, out, "--out", "results", "--stages", "2-4", "--duration", "1s", "--warmup", "0s",
		"--concurrency", "2", "--addr", addr, "--note", "a test", "--docs", docs, "--out", out)
	// Every run starts from the same data: what a run adds goes after it.
	// (A favorite a run removed is not put back: on this seed of 51 the
	// browse mix sometimes removes one.)
	if after := rowCounts(t, dsn); after[0] != before[0] || after[1] > before[1] {
		t.Errorf("comments and favorites before the sweep %v, after %v: a run's writes stayed", before, after)
	}
	var order []string
	for _, r := range sr.Runs {
		if r.Removed == nil {
			t.Errorf("%s: no restore after it", r.Label())
		}
		order = append(order, r.Label())
		if r.Error != "" || r.Result == nil || r.CPU == nil {
			t.Fatalf("%s: error %q, result %v, cpu %v", r.Label(), r.Error, r.Result != nil, r.CPU)
		}
		wantIndexes := r.Indexes || r.Stage == 4
		if r.Result.Server.Stage != r.Stage || r.Result.Server.Indexes != wantIndexes {
			t.Errorf("%s: /healthz said stage %d, indexes %v", r.Label(), r.Result.Server.Stage, r.Result.Server.Indexes)
		}
		if r.CPU.Requests != r.Result.Total.Requests || (sr.PostgresNote == "") != r.CPU.PostgresOK {
			t.Errorf("%s: cpu %+v with postgres note %q", r.Label(), r.CPU, sr.PostgresNote)
		}
	}
	// The database was at the index schema: those runs first, then one
	// migration down for the tagged stages 2 and 3.
	if got, want := strings.Join(order, ", "), "2 mem-sessions --indexes, 3 cache --indexes, 4 indexes, 2 mem-sessions, 3 cache"; got != want {
		t.Fatalf("runs in the order %s, want %s", got, want)
	}
	// The control pair: the first run measured again after the others,
	// with its spread in sweep.json and the report.
	if c := sr.Control; c == nil || c.Run != 0 || c.Repeat == nil || c.Repeat.Label() != sr.Runs[0].Label() || c.Repeat.Result == nil ||
		c.Repeat.Result.Server.Stage != 2 || !c.Repeat.Result.Server.Indexes || c.FirstRPS != sr.Runs[0].Result.Total.RPS ||
		c.SecondRPS != c.Repeat.Result.Total.RPS || c.SpreadPercent < 0 {
		t.Fatalf("control pair %+v: want run 0 (2 mem-sessions --indexes) measured again, with both req/s and the spread", c)
	}
	if len(sr.Ladders) != 2 || len(sr.Ladders[0].Steps) != 3 || len(sr.Ladders[1].Steps) != 3 || sr.Ladders[0].Steps[2].Run != sr.Ladders[1].Steps[2].Run {
		t.Fatalf("ladders %+v: want two of three steps sharing stage 4's run", sr.Ladders)
	}
	if strings.Count(sr.Command, "--out") != 1 || !strings.Contains(sr.Command, "--out "+out) {
		t.Errorf("command %q: want --out once, the value used", sr.Command)
	}
	// Written elsewhere than make writes: repeated by its own command (make
	// would refresh the docs with its figures; TestSweepRerunCommand has both).
	if !strings.HasSuffix(sr.Rerun, "bin/"+sr.Command) {
		t.Errorf("rerun %q: want the sweep's own command", sr.Rerun)
	}

	md, err := os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Stage sweep: both ladders",
		"**Note:** a test",
		"| stage | as the tags build it: req/s | × previous | p99 ms | each step alone (--indexes): req/s |",
		"| 2 mem-sessions |", "| 3 cache |", "| 4 indexes |", " ‡ |",
		"### Step 3: cache", "### Step 4: indexes",
		"| route | tagged: 2 mem-sessions | tagged: 3 cache | alone: 2 mem-sessions --indexes | alone: 3 cache --indexes |",
		"## Per route, as the tags build it", "## Per route, each step alone (--indexes)",
		"**Identical runs:** control pair (2 mem-sessions --indexes measured again at the sweep's end): ",
		fmt.Sprintf("%.1f and %.1f req/s, spread %.1f%%", sr.Control.FirstRPS, sr.Control.SecondRPS, sr.Control.SpreadPercent),
		"## CPU per side", "| 3 cache --indexes | 2 | yes | alone |", "| 3 cache | 1 | no | tagged |", "| 4 indexes | 2 | yes | tagged, alone |",
	} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Logf("README.md:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(out, "chart.svg")); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(doc); !bytes.Contains(b, []byte("| route | tagged: 2 mem-sessions | tagged: 3 cache |")) {
		t.Errorf("the doc's step 3 block was not refreshed:\n%s", b)
	}

	// The schema is left as the sweep found it.
	db, err := models.Open(context.Background(), dsn, models.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	sqlDB, _ := db.DB()
	if v, err := migrations.Version(context.Background(), sqlDB); err != nil || v != idx {
		t.Fatalf("schema version %d (%v) after the sweep, want %d", v, err, idx)
	}
}

// --anonymous is a share: a value outside 0-1, or not a number, or with a
// scenario other than the browse mix, is one line and exit status 2.
func TestLoadtestAnonymousMustBeAShare(t *testing.T) {
	for _, tt := range []struct{ name, value, scenario string }{
		{"above one", "1.5", "browse"}, {"negative", "-0.1", "browse"}, {"not a number", "most", "browse"},
		{"NaN", "NaN", "browse"}, {"with the upload scenario", "0.5", "upload"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run([]string{"loadtest", "--url", "http://127.0.0.1:1", "--scenario", tt.scenario, "--anonymous", tt.value}, &stderr)
			out := strings.TrimSpace(stderr.String())
			if code != 2 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "anonymous") {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming --anonymous", code, out)
			}
		})
	}
	t.Run("the sweep's mix of the topology stages", func(t *testing.T) {
		t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
		var stderr bytes.Buffer
		code := run([]string{"loadtest", "sweep", "--topology-anonymous", "1.1"}, &stderr)
		if out := strings.TrimSpace(stderr.String()); code != 2 || !strings.Contains(out, "--topology-anonymous") {
			t.Fatalf("exit %d, stderr %q; want 2 and a line naming --topology-anonymous", code, out)
		}
	})
}

// tinySeed makes a database at the index schema (a later stage's migration,
// stage 6's photo states, would come first in the sweep's order) with a tiny
// seed, points the environment at it, and finds a free address to serve on.
// runSweep runs `flickrkillr loadtest sweep` with args (which name --out
// out) and reads the sweep.json it wrote.
func runSweep(t *testing.T, out string, args ...string) sweep.Result {
	t.Helper()
	var stderr bytes.Buffer
	if code := run(append([]string{"loadtest", "sweep"}, args...), &stderr); code != 0 {
		t.Fatalf("sweep: exit %d\n%s", code, stderr.String())
	}
	var sr sweep.Result
	b, err := os.ReadFile(filepath.Join(out, "sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sr); err != nil {
		t.Fatal(err)
	}
	return sr
}

// rowCounts is the number of comments and of favorites in dsn.
func rowCounts(t *testing.T, dsn string) [2]int64 {
	t.Helper()
	db, err := models.Open(context.Background(), dsn, models.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	var n [2]int64
	if err := db.Raw(`SELECT (SELECT count(*) FROM comments), (SELECT count(*) FROM favorites)`).Row().Scan(&n[0], &n[1]); err != nil {
		t.Fatal(err)
	}
	return n
}

func tinySeed(t *testing.T) (dsn string, schema int64, addr string) {
	t.Helper()
	schema, err := app.IndexSchema()
	if err != nil {
		t.Fatal(err)
	}
	dsn = modeltest.NewDB(t, schema)
	for k, v := range map[string]string{"FLICKRKILLR_TEST_AS_MAIN": "1", "DATABASE_URL": dsn, "DATA_DIR": t.TempDir(), "REDIS_URL": "", "STAGE": "", "INDEXES": "", "ADDR": ""} {
		t.Setenv(k, v)
	}
	var stderr bytes.Buffer
	if code := run([]string{"seed", "--users", "20", "--photos-per-user", "2-3", "--images", "3"}, &stderr); code != 0 {
		t.Fatalf("seed: exit %d\n%s", code, stderr.String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	return dsn, schema, addr
}

// The anonymous visitors against the real pages: their checks (the "Log in"
// link, each page's markers) hold, they never log in, and the logged-in
// users beside them get in, the gate's 503s (if the log-ins all at once
// meet it) counted as shed, not as errors. One stage, one ladder.
func TestSweepMeasuresAMixWithAnonymousVisitors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	if !app.HasIndexSchema() {
		t.Skip("a build without stage 4")
	}
	_, _, addr := tinySeed(t)
	out := t.TempDir()
	sr := runSweep(t, out, "--stages", "4", "--ladder", "tagged", "--anonymous", "0.5", "--duration", "1s", "--warmup", "0s",
		"--concurrency", "24", "--addr", addr, "--out", out)
	if len(sr.Runs) != 1 || sr.Runs[0].Result == nil {
		t.Fatalf("runs %+v", sr.Runs)
	}
	r := sr.Runs[0]
	res := r.Result
	t.Logf("%s: sign-in %+v", r.Label(), res.SignIn)
	if r.Label() != "4 indexes --anonymous 0.5" || res.Settings.AnonymousUsers != 12 {
		t.Fatalf("run %s with %d anonymous users; want 4 indexes --anonymous 0.5 and 12", r.Label(), res.Settings.AnonymousUsers)
	}
	// On a busy machine the sign-in gate may still be shedding some of the
	// 12 log-ins when the one-second window ends: those users are counted
	// as waiting, never as errors, and the anonymous half browses regardless.
	if res.Total.Errors != 0 || res.SignIn == nil || res.SignIn.Users != 12 ||
		res.SignIn.Before+res.SignIn.During+res.SignIn.Waiting != 12 {
		t.Fatalf("%d errors (%+v), sign-in %+v; want none, and each of the 12 users in or waiting", res.Total.Errors, res.Routes, res.SignIn)
	}
	// Which routes a handful of users pick in one second on a busy machine
	// is luck: the test asks for the two halves of the mix, each measured
	// under its own route names, not for every route.
	var anon, member int64
	for _, rr := range res.Routes {
		switch {
		case strings.HasPrefix(rr.Route, "anon-"):
			anon += rr.Requests
		case rr.Route != "login":
			member += rr.Requests
		}
	}
	if anon == 0 || (res.SignIn.Before > 0 && member == 0) { // a user in before the window browses in it
		t.Errorf("%d anonymous and %d logged-in requests, want both: %+v", anon, member, res.Routes)
	}
}

// Overload is not failure (issue 23): far more users than two cores can
// serve, all signing in at once, against one stage-6 server. The run
// finishes: the server sheds most sign-ins, the tool waits and retries them,
// counts them apart and says who is still waiting; latency grows. The pages
// do not fail (the server admits work at the front, and its breakers take
// slow for slow): with FLICKRKILLR_OVERLOAD_STRICT=1, as CI runs it
// (scripts/test.sh), a page error fails the test. Heavy (half a minute of
// both cores): run with FLICKRKILLR_OVERLOAD=1.
func TestOverloadedRunFinishesWithShedSignInsApart(t *testing.T) {
	if os.Getenv("FLICKRKILLR_OVERLOAD") != "1" {
		t.Skip("half a minute of both cores: FLICKRKILLR_OVERLOAD=1 runs it")
	}
	if _, ok := app.LookupStage(6); !ok {
		t.Skip("a build without stage 6")
	}
	_, _, addr := tinySeed(t)
	var stderr bytes.Buffer
	if code := run([]string{"migrate", "--stage", "6"}, &stderr); code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, stderr.String())
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(exe, "serve", "--stage", "6", "--addr", addr)
	srv.Env = append(os.Environ(), "ADMIN_ADDR=")
	srv.Stdout, srv.Stderr = &stderr, &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Signal(syscall.SIGINT); srv.Wait() }()
	ctx := context.Background()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		} else if i == 300 {
			t.Fatalf("the server did not listen: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const users = 512
	res, err := loadtest.Run(ctx, loadtest.Options{URL: "http://" + addr, Duration: 10 * time.Second, Concurrency: users, Scenario: "browse", Password: seed.Password, Seed: 1})
	if err != nil {
		t.Fatalf("the overloaded run did not finish: %v", err)
	}
	var text bytes.Buffer
	loadtest.WriteText(&text, res)
	t.Logf("\n%s", text.String())
	s := res.SignIn
	if s == nil || s.Users != users || s.Before+s.During+s.Waiting != users || s.Shed == 0 {
		t.Fatalf("sign-in %+v: want all %d users accounted for, and sign-ins shed", s, users)
	}
	var shed, loginErrors int64
	for _, r := range res.Routes {
		if r.Route == "login" {
			shed, loginErrors = r.Shed, r.Errors
		} else if r.Shed != 0 {
			t.Errorf("route %s has %d shed: only sign-ins are", r.Route, r.Shed)
		}
	}
	if res.Total.Shed != shed || s.Shed < shed {
		t.Errorf("shed: total %d, login %d, sign-ins over the run %d", res.Total.Shed, shed, s.Shed)
	}
	if pageErrors := res.Total.Errors - loginErrors; pageErrors != 0 {
		var why []string // what the server logged about them, a few lines
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "path=/login ") && len(why) < 5 {
				why = append(why, line)
			}
		}
		t.Logf("the server's first errors:\n%s", strings.Join(why, "\n"))
		if os.Getenv("FLICKRKILLR_OVERLOAD_STRICT") == "1" {
			t.Errorf("%d page errors under overload, want 0", pageErrors)
		} else {
			t.Logf("%d page errors under overload (the server's part of issue 23; FLICKRKILLR_OVERLOAD_STRICT=1 fails on them)", pageErrors)
		}
	}
}

// An interrupted sweep (Ctrl-C) keeps what it measured apart and leaves
// --out and the docs as they were: one stopped after a run wrote its
// one-run report over results/ and every stage doc's figure block.
func TestAnInterruptedSweepLeavesTheResultsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server per run")
	}
	if !app.HasIndexSchema() {
		t.Skip("a build without the index migration has one ladder")
	}
	_, _, addr := tinySeed(t)
	out, docs := t.TempDir(), t.TempDir()
	report, doc := filepath.Join(out, "README.md"), filepath.Join(docs, "03-cache.md")
	os.WriteFile(report, []byte("the last full sweep\n"), 0o644)
	docText := "# Stage 3\n<!-- sweep: step 3 -->\nits figures\n<!-- /sweep -->\n"
	os.WriteFile(doc, []byte(docText), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "loadtest", "sweep", "--stages", "2-4", "--ladder", "alone", "--duration", "2s",
		"--warmup", "0s", "--concurrency", "2", "--addr", addr, "--docs", docs, "--out", out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	lines := bufio.NewScanner(stderr)
	measured := 0
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "measuring for") {
			if measured++; measured == 2 { // the first run is done: interrupt the second
				cmd.Process.Signal(syscall.SIGINT)
			}
		}
	}
	cmd.Wait()
	if b, _ := os.ReadFile(report); string(b) != "the last full sweep\n" {
		t.Errorf("--out's report after the interrupt: %q, want it untouched\n%s", b, log.String())
	}
	if b, _ := os.ReadFile(doc); string(b) != docText {
		t.Errorf("the doc's block after the interrupt: %q, want it untouched", b)
	}
	i := strings.Index(log.String(), "dir=")
	if i < 0 {
		t.Fatalf("the log names no directory for the partial report:\n%s", log.String())
	}
	dir := strings.Fields(log.String()[i+len("dir="):])[0]
	t.Cleanup(func() { os.RemoveAll(dir) })
	var sr sweep.Result
	if b, err := os.ReadFile(filepath.Join(dir, "sweep.json")); err != nil || json.Unmarshal(b, &sr) != nil || len(sr.Runs) == 0 || sr.Runs[0].Result == nil {
		t.Fatalf("the partial report in %s: %v, runs %+v", dir, err, sr.Runs)
	}
}
