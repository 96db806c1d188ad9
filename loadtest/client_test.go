package loadtest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections opened to it.
func countingServer(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func testClient(t testing.TB, base string) *client {
	c, err := newClient(base, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestClientReadsEveryKindOfBody(t *testing.T) {
	big := strings.Repeat("0123456789", 5000) // net/http sends this chunked
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "short")
		case "/chunked":
			io.WriteString(w, big[:len(big)/2])
			w.(http.Flusher).Flush()
			io.WriteString(w, big[len(big)/2:])
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	}))
	c := testClient(t, srv.URL)
	var res response
	for range 3 {
		for _, tt := range []struct {
			path, body string
			status     int
		}{
			{"/length", "short", 200}, {"/chunked", big, 200}, {"/empty", "", 204}, {"/notmodified", "", 304},
		} {
			if err := c.do(context.Background(), http.MethodGet, tt.path, nil, &res); err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			if res.status != tt.status || string(res.body) != tt.body {
				t.Fatalf("GET %s: status %d, %d bytes; want %d, %d bytes", tt.path, res.status, len(res.body), tt.status, len(tt.body))
			}
		}
	}
	if err := c.do(context.Background(), http.MethodGet, "/length", nil, &res); err != nil || string(res.contentType) != "text/plain" {
		t.Fatalf("GET /length: %v, content type %q", err, res.contentType)
	}
	if err := c.do(context.Background(), http.MethodHead, "/length", nil, &res); err != nil || res.status != 200 || len(res.body) != 0 {
		t.Fatalf("HEAD /length: %v, status %d, %d body bytes; want 200 and none", err, res.status, len(res.body))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("14 requests used %d connections, want 1 (keep-alive)", n)
	}
	for range 2 {
		if err := c.do(context.Background(), http.MethodGet, "/close", nil, &res); err != nil || string(res.body) != "bye" {
			t.Fatalf("GET /close: %v %q", err, res.body)
		}
	}
	if err := c.do(context.Background(), http.MethodGet, "/length", nil, &res); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("two Connection: close answers and one request more used %d connections; want 3", n)
	}
}

func TestClientKeepsCookiesAndDoesNotFollowRedirects(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			if r.Method != http.MethodPost || r.FormValue("name") != "ann & bob" {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/", HttpOnly: true})
			http.SetCookie(w, &http.Cookie{Name: "theme", Value: "dark"})
			http.Redirect(w, r, "/home", http.StatusSeeOther)
		case "/logout":
			http.SetCookie(w, &http.Cookie{Name: "session", MaxAge: -1})
			http.SetCookie(w, &http.Cookie{Name: "theme", Expires: time.Unix(1, 0)})
		default:
			var names []string
			for _, c := range r.Cookies() {
				names = append(names, c.Name+"="+c.Value)
			}
			io.WriteString(w, strings.Join(names, ","))
		}
	}))
	c := testClient(t, srv.URL)
	var res response
	ctx := context.Background()
	if err := c.do(ctx, http.MethodPost, "/login", url.Values{"name": {"ann & bob"}}, &res); err != nil {
		t.Fatal(err)
	}
	if res.status != http.StatusSeeOther || string(res.location) != "/home" {
		t.Fatalf("POST /login: status %d, Location %q; want 303 to /home, not followed", res.status, res.location)
	}
	if err := c.do(ctx, http.MethodGet, "/home", nil, &res); err != nil || string(res.body) != "session=s1,theme=dark" {
		t.Fatalf("GET /home after log-in sent cookies %q (%v), want session=s1,theme=dark", res.body, err)
	}
	if err := c.do(ctx, http.MethodGet, "/logout", nil, &res); err != nil {
		t.Fatal(err)
	}
	if err := c.do(ctx, http.MethodGet, "/home", nil, &res); err != nil || string(res.body) != "" {
		t.Fatalf("GET /home after log-out sent cookies %q (%v), want none", res.body, err)
	}
}

func TestClientResendsWhenTheServerClosedAnIdleConnection(t *testing.T) {
	var posts atomic.Int64
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	c := testClient(t, srv.URL)
	var res response
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if err := c.do(context.Background(), http.MethodGet, "/", nil, &res); err != nil {
			t.Fatal(err)
		}
		srv.CloseClientConnections() // as an idle timeout or a restart would
		var form url.Values
		if method == http.MethodPost {
			form = url.Values{"a": {"1"}}
		}
		if err := c.do(context.Background(), method, "/", form, &res); err != nil || string(res.body) != "ok" {
			t.Fatalf("%s on a connection the server closed: %v %q", method, err, res.body)
		}
	}
	if posts.Load() != 1 || conns.Load() != 3 {
		t.Fatalf("%d posts on %d connections; want 1 post, 3 connections", posts.Load(), conns.Load())
	}
}

func TestClientAbortsWhenTheRunEnds(t *testing.T) {
	release := make(chan struct{})
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	defer close(release)
	c := testClient(t, srv.URL)
	var res response
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// /slow never answers by itself (release is closed only when the test
	// ends), so a client that did not abort would never return: wait on the
	// return, with a bound only so that such a client fails instead of hanging.
	done := make(chan error, 1)
	go func() { done <- c.do(ctx, http.MethodGet, "/slow", nil, &res) }()
	select {
	case err := <-done:
		if !errors.Is(err, errAborted) {
			t.Fatalf("a request outliving its run: %v, want errAborted", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a request outliving its run did not return when the run ended")
	}
	// The next run's context works on a fresh connection.
	if err := c.do(context.Background(), http.MethodGet, "/", nil, &res); err != nil || string(res.body) != "ok" {
		t.Fatalf("after an aborted request: %v %q", err, res.body)
	}
}

// rawServer answers every connection with the same bytes, then closes it.
func rawServer(t *testing.T, answer string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for { // read the request head
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(conn, answer)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestClientRejectsMalformedAnswers(t *testing.T) {
	for _, tt := range []struct{ name, answer, want string }{
		{"not HTTP", "SSH-2.0-OpenSSH\r\n", "malformed status line"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "bad Content-Length"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "body"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"},
		{"nothing", "", "no answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, rawServer(t, tt.answer))
			var res response
			err := c.do(context.Background(), http.MethodGet, "/", nil, &res)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("answer %q: error %v, want one saying %q", tt.answer, err, tt.want)
			}
		})
	}
	t.Run("body until close", func(t *testing.T) {
		c := testClient(t, rawServer(t, "HTTP/1.0 200 OK\r\n\r\nall of it"))
		var res response
		if err := c.do(context.Background(), http.MethodGet, "/", nil, &res); err != nil || string(res.body) != "all of it" {
			t.Fatalf("HTTP/1.0 answer without a length: %v %q", err, res.body)
		}
	})
}

func TestNewClientWantsAnHTTPURL(t *testing.T) {
	for _, u := range []string{"localhost:8080", "https://example.com", "http://", "ftp://x"} {
		if _, err := newClient(u, time.Second); err == nil || !strings.Contains(err.Error(), "--url") {
			t.Errorf("newClient(%q): %v, want an error naming --url", u, err)
		}
	}
	c, err := newClient("http://127.0.0.1:9/base/", time.Second)
	if err != nil || c.addr != "127.0.0.1:9" || c.prefix != "/base" {
		t.Fatalf("newClient: %+v %v", c, err)
	}
}

// The cost of one keep-alive request to a trivial handler, with this
// client and with net/http's (the server's cost is in both):
//
//	go test ./loadtest -run '^$' -bench Trivial -benchmem
func BenchmarkTrivialRequest(b *testing.B) {
	srv, _ := countingServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, "body { margin: 0 }")
	}))
	b.Run("loadtest-client", func(b *testing.B) {
		c := testClient(b, srv.URL)
		var res response
		ctx := context.Background()
		for b.Loop() {
			if err := c.do(ctx, http.MethodGet, "/static/style.css", nil, &res); err != nil || res.status != 200 {
				b.Fatal(err, res.status)
			}
		}
	})
	b.Run("net-http-client", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		defer c.CloseIdleConnections()
		for b.Loop() {
			res, err := c.Get(srv.URL + "/static/style.css")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatal(strconv.Itoa(res.StatusCode))
			}
		}
	})
}
