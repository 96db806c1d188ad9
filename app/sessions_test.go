package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A session this build cannot read — another codec version's, the gob of an
// older build that a newer value type broke, cut short, random bytes — is a
// clean log-out on every page: the page an anonymous visitor sees, the bad
// session deleted and its cookie cleared. Never a 5xx (a rollback used to lock
// every logged-in user out with 503s until their cookie expired).
func TestAnUnreadableSessionIsACleanLogOut(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	good, err := sessionCodec{}.Encode(deadline, map[string]any{sessUserID: int64(1), sessUserName: "sam"})
	if err != nil {
		t.Fatal(err)
	}
	future := append([]byte{sessionMarker, sessionVersion + 1}, good[2:]...)
	random := make([]byte, 64)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	random[0] = sessionMarker // past the gob fallback, into this codec's checks
	values := map[string][]byte{
		"a session of a codec version this build does not know": future,
		"a session cut short":                    good[:len(good)/2],
		"random bytes after this codec's marker": random,
		"random bytes that are not even gob":     []byte("\x07garbage that is not gob"),
		"a varint longer than the value":         binary.AppendUvarint([]byte{sessionMarker, sessionVersion}, 1<<40),
	}
	for n := 1; n <= 3; n++ {
		if _, ok := LookupStage(n); !ok {
			continue // an early workshop tag
		}
		ta := newTestApp(t, n)
		users := 0
		for name, bad := range values {
			users++
			t.Run(stageName(n)+": "+name, func(t *testing.T) {
				b := ta.browser(t)
				b.signup(fmt.Sprintf("sam%d", users))
				token := b.cookie(sessionCookieName)
				if err := ta.sessions.Store.Commit(token, bad, time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				res := b.get("/")
				mustStatus(t, res, http.StatusOK)
				if strings.Contains(res.Body, `action="/logout"`) {
					t.Error("the page still shows a logged-in user")
				}
				if b.cookie(sessionCookieName) != "" {
					t.Errorf("the bad session's cookie was not cleared: Set-Cookie %q", res.Header.Values("Set-Cookie"))
				}
				if _, found, err := ta.sessions.Store.Find(token); err != nil || found {
					t.Errorf("the bad session is still in the store (found %v, err %v)", found, err)
				}
				// The next pages are an anonymous visitor's, with no error.
				for _, p := range []string{"/", "/upload", "/login"} {
					if res := b.get(p); res.Status >= 500 {
						t.Errorf("GET %s after the log-out: %d", p, res.Status)
					}
				}
			})
		}
		t.Run(stageName(n)+": a bad session on a POST is a log-out too", func(t *testing.T) {
			b := ta.browser(t)
			b.signup("samposter")
			token := b.cookie(sessionCookieName)
			if err := ta.sessions.Store.Commit(token, future, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if res := b.post("/logout", nil); res.Status >= 500 {
				t.Errorf("POST /logout with an unreadable session: %d", res.Status)
			}
		})
	}
}

func stageName(n int) string { return "stage " + string(rune('0'+n)) }

// The codec reads its own version and the gob of the builds before it, and
// refuses (with errBadSession) what it cannot read.
func TestSessionCodecVersions(t *testing.T) {
	deadline := time.Now().Add(time.Hour).UTC()
	values := map[string]any{sessUserID: int64(7), sessUserName: "user7"}
	b, _ := sessionCodec{}.Encode(deadline, values)
	if b[0] != sessionMarker || b[1] != sessionVersion {
		t.Fatalf("an encoded session starts %x, want the marker and version %x %x", b[:2], sessionMarker, sessionVersion)
	}
	old, _ := sessionCodec{}.gobEncode(deadline, values)
	if _, v, err := (sessionCodec{}).Decode(old); err != nil || v[sessUserName] != "user7" {
		t.Errorf("the gob of an older build: %v %v", v, err)
	}
	for _, bad := range [][]byte{nil, {sessionMarker}, {sessionMarker, sessionVersion + 1, 0, 0}, []byte("junk")} {
		if _, _, err := (sessionCodec{}).Decode(bad); err == nil || !isBadSession(err) {
			t.Errorf("Decode(%x): %v, want errBadSession", bad, err)
		}
	}
}

func isBadSession(err error) bool {
	return err != nil && strings.Contains(err.Error(), errBadSession.Error())
}

// From stage 3 a session's expiry moves with its use (one refresh a period),
// but never past seven days from its log-in: scs's absolute lifetime, which
// the refresh had replaced.
func TestStage3SessionsHaveAnAbsoluteLifetime(t *testing.T) {
	if _, ok := LookupStage(3); !ok {
		t.Skip("stage 3 (the session refresh) is not in this build")
	}
	ta := newTestApp(t, 3)
	b := ta.browser(t)
	b.signup("lifetime")
	token := b.cookie(sessionCookieName)
	age := func(born time.Time, deadline time.Time) {
		t.Helper()
		ctx, err := ta.sessions.Load(context.Background(), token)
		if err != nil {
			t.Fatal(err)
		}
		ta.sessions.Put(ctx, sessBorn, born.Unix())
		ta.sessions.SetDeadline(ctx, deadline)
		if _, _, err := ta.sessions.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deadline := func() time.Time {
		ctx, err := ta.sessions.Load(context.Background(), token)
		if err != nil {
			t.Fatal(err)
		}
		return ta.sessions.Deadline(ctx)
	}

	t.Run("a refresh near the end of the lifetime stops at its end", func(t *testing.T) {
		born := time.Now().Add(-sessionLifetime + 3*time.Hour)
		age(born, time.Now().Add(time.Hour)) // due for a refresh
		res := b.get("/")
		mustStatus(t, res, http.StatusOK)
		mustContain(t, res, `action="/logout"`)
		end := born.Add(sessionLifetime)
		if d := deadline(); d.After(end.Add(time.Second)) {
			t.Errorf("the refresh moved the deadline to %v, past the lifetime's end %v", d, end)
		}
	})
	t.Run("past its lifetime the user is logged out", func(t *testing.T) {
		age(time.Now().Add(-sessionLifetime-time.Minute), time.Now().Add(time.Hour))
		res := b.get("/")
		mustStatus(t, res, http.StatusOK)
		if strings.Contains(res.Body, `action="/logout"`) {
			t.Error("a session past its 7 days still logs its user in")
		}
	})
}
