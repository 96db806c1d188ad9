package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// sessionWrites is how many sessions the store has saved so far (the
// timedSessions wrapper counts them).
func (ta *testApp) sessionWrites() int {
	var m dto.Metric
	if err := ta.metrics.SessionOps("commit", "ok").Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetCounter().GetValue())
}

func TestStage3WritesASessionOnlyWhenItChanges(t *testing.T) {
	ta := newTestApp(t, 3)
	b := ta.browser(t)
	b.signup("sam")
	b.get("/") // takes the sign-up's flash: a change, written
	after := ta.sessionWrites()
	if after == 0 {
		t.Fatal("the sign-up wrote no session")
	}

	t.Run("a GET that changes nothing writes nothing and sends no cookie", func(t *testing.T) {
		for _, p := range []string{"/", "/users/sam", "/upload", "/", "/upload"} {
			res := b.get(p)
			mustStatus(t, res, http.StatusOK)
			if sc := res.Header.Values("Set-Cookie"); len(sc) > 0 {
				t.Errorf("GET %s sent Set-Cookie %q", p, sc)
			}
		}
		if n := ta.sessionWrites(); n != after {
			t.Errorf("%d session writes for five unchanged GETs, want 0", n-after)
		}
	})

	t.Run("a flash is saved, and taken once", func(t *testing.T) {
		before := ta.sessionWrites()
		ta.putFlashFor(t, b)
		if n := ta.sessionWrites(); n <= before {
			t.Fatalf("putting a flash wrote no session")
		}
		before = ta.sessionWrites()
		res := b.get("/")
		mustContain(t, res, `class="flash"`)
		if n := ta.sessionWrites(); n != before+1 {
			t.Errorf("taking the flash wrote %d sessions, want 1", n-before)
		}
		before = ta.sessionWrites()
		b.get("/")
		if n := ta.sessionWrites(); n != before {
			t.Errorf("the GET after the flash wrote %d sessions, want 0", n-before)
		}
	})

	t.Run("an old session's expiry moves forward once", func(t *testing.T) {
		ctx, err := ta.sessions.Load(context.Background(), b.cookie(ta.sessions.Cookie.Name))
		if err != nil {
			t.Fatal(err)
		}
		ta.sessions.SetDeadline(ctx, time.Now().Add(sessionIdle-2*time.Hour))
		if _, _, err := ta.sessions.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		before := ta.sessionWrites()
		if sc := b.get("/").Header.Values("Set-Cookie"); len(sc) != 1 {
			t.Errorf("the refresh sent Set-Cookie %q, want one cookie", sc)
		}
		if sc := b.get("/").Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("the GET after the refresh sent Set-Cookie %q", sc)
		}
		if n := ta.sessionWrites(); n != before+1 {
			t.Errorf("%d session writes, want 1 (the refresh)", n-before)
		}
	})
}

// putFlashFor leaves a flash in b's session the way a POST does: a comment
// on the browser's own photo redirects with one.
func (ta *testApp) putFlashFor(t *testing.T, b *browser) {
	t.Helper()
	photo := b.upload(map[string]string{"title": "Flash", "tags": "f"}, "a.png", testPNG(t, 20, 20)).Header.Get("Location")
	if photo == "" {
		t.Fatal("the upload did not redirect")
	}
}

func TestStagesBefore3RewriteTheSessionOnEveryRequest(t *testing.T) {
	ta := newTestApp(t, 2)
	b := ta.browser(t)
	b.signup("rita")
	before := ta.sessionWrites()
	for range 3 {
		if sc := b.get("/").Header.Values("Set-Cookie"); len(sc) != 1 {
			t.Errorf("stage 2 GET sent Set-Cookie %q, want its rewrite's cookie", sc)
		}
	}
	if n := ta.sessionWrites(); n != before+3 {
		t.Errorf("stage 2: %d session writes for 3 GETs, want 3", n-before)
	}
}

func TestSessionCodecRoundTripsAndReadsGob(t *testing.T) {
	deadline := time.Now().Add(time.Hour).UTC().Truncate(time.Nanosecond)
	values := map[string]any{sessUserID: int64(42), sessUserName: "user42", sessFlash: "Hello, ünïcode."}
	b, err := sessionCodec{}.Encode(deadline, values)
	if err != nil {
		t.Fatal(err)
	}
	got, gotValues, err := sessionCodec{}.Decode(b)
	if err != nil || !got.Equal(deadline) || len(gotValues) != 3 || gotValues[sessUserID] != int64(42) || gotValues[sessFlash] != values[sessFlash] {
		t.Fatalf("round trip: %v %v %v", got, gotValues, err)
	}
	for n := range b {
		if _, _, err := (sessionCodec{}).Decode(b[:n]); err == nil && n > 2 {
			t.Errorf("a session cut to %d bytes decoded", n)
		}
	}
	old, _ := sessionCodec{}.gobEncode(deadline, values)
	if _, v, err := (sessionCodec{}).Decode(old); err != nil || v[sessUserName] != "user42" {
		t.Errorf("a gob session written before the codec: %v %v", v, err)
	}
}
