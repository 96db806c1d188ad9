package main

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flickrkillr/app"
	"flickrkillr/app/scalemodel"
)

// A two-stage sweep in model mode on a tiny seed (issue 33): every server
// runs `serve --model default`, and the report has each run's hosts with
// their quotas and CPU over the measured window, a named bottleneck with the
// rate it predicts, the tool's and the machine's CPU with the run's
// validity, the step's bounding hosts, the hosts' chart and the control
// pair's spread. Structure only, never timings. As root, with a cpu
// controller and a local test cluster (the db host adopts its postmaster).
func TestSweepInModelModeWritesHostsQuotasAndBottleneck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server per run")
	}
	if !app.HasIndexSchema() {
		t.Skip("a build without stage 4")
	}
	if os.Geteuid() != 0 {
		t.Skip("--model makes CPU cgroups: needs root (CI runs it as root)")
	}
	probe, err := scalemodel.New(scalemodel.DefaultSpec(), scalemodel.Options{Prefix: "flickrkillr-model-probe", StateDir: t.TempDir()})
	if err != nil {
		t.Skipf("no scale model here: %v", err)
	}
	probe.Close()
	dsn, _, addr := tinySeed(t)
	if u, _ := url.Parse(dsn); u != nil {
		if _, err := scalemodel.ListenerPID("tcp", u.Port()); err != nil {
			t.Skipf("the test database is not a local cluster: %v", err)
		}
	}
	out := t.TempDir()
	// "3 cache --indexes" and "4 indexes" run on the same schema: no
	// migration between them.
	sr := runSweep(t, out, "--model", "default", "--stages", "3-4", "--ladder", "alone", "--duration", "2s", "--warmup", "0s",
		"--concurrency", "4", "--addr", addr, "--out", out)
	if want := scalemodel.DefaultSpec().String(); sr.Model != want {
		t.Fatalf("sweep.json's model %q, want %q", sr.Model, want)
	}
	runs := sr.Runs
	if sr.Control != nil && sr.Control.Repeat != nil {
		runs = append(runs, sr.Control.Repeat)
	}
	if len(runs) != 3 {
		t.Fatalf("%d runs (with the control pair's repeat), want 3", len(runs))
	}
	for _, r := range runs {
		m := r.Model
		if r.Error != "" || r.Result == nil || m == nil {
			t.Fatalf("%s: error %q, result %v, model %+v", r.Label(), r.Error, r.Result != nil, m)
		}
		quotas := map[string]float64{}
		for _, h := range m.Hosts {
			quotas[h.Name] = h.Quota
		}
		if quotas["app-1"] != 0.15 || quotas["db"] != 0.6 {
			t.Errorf("%s: hosts %+v, want app-1 at 0.15 and db at 0.6", r.Label(), m.Hosts)
		}
		if _, ok := quotas[m.Bottleneck]; !ok || m.PredictedRPS <= 0 {
			t.Errorf("%s: bottleneck %q predicting %.1f req/s: want one of the hosts and a rate", r.Label(), m.Bottleneck, m.PredictedRPS)
		}
		if m.Cores < 1 || m.QuotaCPUs < 0.75 || m.WindowS <= 0 || !m.IdleOK {
			t.Errorf("%s: model %+v: want the cores, the quotas' sum, the window and the machine's idle share", r.Label(), m)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.ReplaceAll(md, []byte("**"), nil) // the bottleneck is bold in the hosts' table
	for _, want := range []string{
		"# Stage sweep in model mode", "`serve --model " + sr.Model + "`",
		"## The model, run by run", "| run | req/s | bottleneck | predicted req/s | measured / predicted |",
		"| 3 cache --indexes | app-1 | 0.15 |", "| 4 indexes | db | 0.60 |", "(hosts.svg)",
		"- model, each step alone (--indexes): bounded by ", "CPU ms per request: ",
		"Identical runs: control pair (3 cache --indexes measured again at the sweep's end): ",
	} {
		if !bytes.Contains(plain, []byte(want)) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if t.Failed() || os.Getenv("SHOW") != "" {
		t.Logf("README.md:\n%s", md)
	}
	if svg, err := os.ReadFile(filepath.Join(out, "hosts.svg")); err != nil || !bytes.Contains(svg, []byte("app-1")) {
		t.Errorf("hosts.svg: %v, %.200s", err, svg)
	}
}

// A bad spec is one line naming --model and exit status 2, before the sweep
// touches the database or starts a server.
func TestSweepModelRefusesABadSpecInOneLine(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
	var stderr bytes.Buffer
	code := run([]string{"loadtest", "sweep", "--model", "cpu=2"}, &stderr)
	if out := strings.TrimSpace(stderr.String()); code != 2 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "--model") {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming --model", code, out)
	}
}
