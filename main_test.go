package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

// Bad configuration: one clear line naming the variable, and exit status 2.
func TestBadConfigurationExits2WithOneLine(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no database", map[string]string{"DATABASE_URL": ""}, []string{"serve"}, "DATABASE_URL"},
		{"stage not a number", map[string]string{"STAGE": "two"}, []string{"serve"}, "STAGE"},
		{"stage unknown", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, []string{"serve", "--stage", "9"}, "STAGE"},
		{"bad redis url", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "REDIS_URL": "nope://"}, []string{"serve"}, "REDIS_URL"},
		{"indexes not a boolean", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "INDEXES": "please"}, []string{"migrate"}, "INDEXES"},
		{"unknown flag", nil, []string{"migrate", "--bogus"}, "bogus"},
		{"bad photo range", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, []string{"seed", "--photos-per-user", "ten"}, "--photos-per-user"},
		{"unknown command", nil, []string{"fly"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"DATABASE_URL", "REDIS_URL", "STAGE", "ADDR", "DATA_DIR", "INDEXES"} {
				t.Setenv(k, tt.env[k])
			}
			var stderr bytes.Buffer
			code := run(tt.args, &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if code != 2 || !strings.Contains(last, tt.want) {
				t.Fatalf("exit %d, last line %q; want 2 and a line naming %s", code, last, tt.want)
			}
		})
	}
}

// A sweep that writes what make writes is repeated with make; one written
// elsewhere by its own command, since make would also refresh the docs.
func TestSweepRerunCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", "results", "--docs", "docs/stages,README.md", "--stages", "4,5"}, `make loadtest-sweep SWEEP_FLAGS="--stages 4,5"`},
		{[]string{"--out", "results/db-latency-1ms", "--stages", "4,5"}, "make build && DATABASE_URL=$(scripts/pg.sh url dev) bin/flickrkillr loadtest sweep --out results/db-latency-1ms --stages 4,5"},
	} {
		fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
		fs.String("out", "results", "")
		fs.String("docs", "", "")
		fs.String("stages", "0-7", "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, rerun := sweepCommand(fs); rerun != tc.want {
			t.Errorf("%v: rerun %q, want %q", tc.args, rerun, tc.want)
		}
	}
}
