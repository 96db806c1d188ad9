package app

import (
	"net/http"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"flickrkillr/models/modeltest"
)

// At stage 7 the log-in throttle counts in the Redis the instances share:
// wrong passwords sent alternately to two instances get the first 429 at
// the same attempt as on one instance (11: ten failures per account), where
// per-instance counts gave it at attempt 21. The same throttles count the
// sign-up's failures.
func TestStage7ThrottleCountsAcrossInstances(t *testing.T) {
	schema, err := SchemaFor(scaleOutStage)
	if err != nil {
		t.Fatal(err)
	}
	dsn, data := modeltest.NewDB(t, schema), t.TempDir()
	redisURL := testRedisURL(t)
	if redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr() + "/0"
	}
	firstRefusal := func(apps ...*testApp) int {
		for i := 1; i <= 3*maxNameFailures; i++ {
			rec := apps[i%len(apps)].postFrom(t, "127.0.0.1", "/login", login("victim", "wrong password"), "X-Forwarded-For", "203.0.113.9")
			switch rec.Code {
			case http.StatusTooManyRequests:
				return i
			case http.StatusUnprocessableEntity:
			default:
				t.Fatalf("attempt %d: status %d", i, rec.Code)
			}
		}
		return 0
	}
	one := newTestAppOn(t, scaleOutStage, dsn, data, redisURL)
	alone := firstRefusal(one)
	one.lim.names.Reset("login:victim")
	one.lim.addrs.Reset("login:203.0.113.9")
	i1, i2 := newTestAppOn(t, scaleOutStage, dsn, data, redisURL), newTestAppOn(t, scaleOutStage, dsn, data, redisURL)
	both := firstRefusal(i1, i2)
	if alone != maxNameFailures+1 || both != alone {
		t.Fatalf("first 429 at attempt %d through two instances, %d through one; want both %d", both, alone, maxNameFailures+1)
	}
}
