package main

import (
	"bytes"
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
		{"stage unknown", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, []string{"serve", "--stage", "99"}, "STAGE"},
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
