package main

import (
	"bytes"
	"strings"
	"testing"
)

// Stage 6: a worker and the queue command reach the queue in a shared Redis;
// without REDIS_URL (and no serve process's embedded Redis on
// DATA_DIR) they say so in one line and exit 2.
func TestQueueCommandsNeedASharedRedis(t *testing.T) {
	for _, cmd := range []string{"worker", "queue"} {
		t.Run(cmd, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
			t.Setenv("REDIS_URL", "")
			t.Setenv("DATA_DIR", t.TempDir()) // no serve process with an embedded Redis there
			var stderr bytes.Buffer
			code := run([]string{cmd}, &stderr)
			out := strings.TrimSpace(stderr.String())
			if code != 2 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "REDIS_URL: is not set") {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming REDIS_URL", code, out)
			}
		})
	}
}
