// Command trickle holds slow request bodies open against a local server
// (issue 31's slow client): --conns connections, each sending a comment
// form's headers with a 64 KiB Content-Length and then its body at one byte
// a second, reopened as soon as the server answers or closes it. With
// --login it signs in first and sends that session's cookie, so that its
// forms get as far as a logged-in user's do. It prints how the server
// answered them when --duration is over. Traffic goes only to --url.
//
//	go run ./scripts/trickle --url http://127.0.0.1:18080 --conns 16 --login user1:flickrkillr
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the server (local)")
	conns := flag.Int("conns", 16, "slow connections held open at once")
	length := flag.Int("length", 64<<10, "the Content-Length each one announces")
	rate := flag.Duration("every", time.Second, "one body byte per this interval")
	path := flag.String("path", "/photos/1/comments", "where to post")
	login := flag.String("login", "", "name:password to sign in as first (empty: anonymous)")
	duration := flag.Duration("duration", 30*time.Second, "how long to hold them")
	flag.Parse()
	u, err := url.Parse(*base)
	if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		fail("--url must be a local http:// address")
	}
	cookie := ""
	if *login != "" {
		if cookie, err = signIn(*base, *login); err != nil {
			fail(err.Error())
		}
	}
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sig, *duration) // or until stopped: it still reports
	defer cancel()
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				a := hold(ctx, u.Host, *path, cookie, *length, *rate)
				mu.Lock()
				answers[a]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var keys []string
	for k := range answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("trickle: %d connections for %s:", *conns, *duration)
	for _, k := range keys {
		fmt.Printf(" %s ×%d", k, answers[k])
	}
	fmt.Println()
}

// hold sends one slow form and says how it ended: the status the server
// answered, "closed" when it closed without one, or "held" when the run
// ended first.
func hold(ctx context.Context, host, path, cookie string, length int, every time.Duration) string {
	conn, err := net.Dial("tcp", host)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return "dial-error"
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	hdr := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", length)
	if cookie != "" {
		hdr += "Cookie: " + cookie + "\r\n"
	}
	if _, err := conn.Write([]byte(hdr + "\r\n")); err != nil {
		return "closed"
	}
	answer := make(chan string, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answer <- "closed"
			return
		}
		res.Body.Close()
		answer <- fmt.Sprint(res.StatusCode)
	}()
	body := "body=" + strings.Repeat("x", max(length-5, 0))
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; i < len(body); i++ {
		select {
		case a := <-answer:
			return a
		case <-ctx.Done():
			return "held"
		case <-t.C:
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				select {
				case a := <-answer:
					return a
				case <-time.After(time.Second):
					return "closed"
				}
			}
		}
	}
	select {
	case a := <-answer:
		return a
	case <-ctx.Done():
		return "held"
	}
}

// signIn logs in and returns the session cookie as a Cookie header value.
func signIn(base, login string) (string, error) {
	name, password, _ := strings.Cut(login, ":")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	for range 30 { // a busy server sheds sign-ins: try again
		res, err := c.PostForm(base+"/login", url.Values{"name": {name}, "password": {password}})
		if err != nil {
			return "", fmt.Errorf("trickle: log in: %w", err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusSeeOther {
			var parts []string
			for _, ck := range res.Cookies() {
				parts = append(parts, ck.Name+"="+ck.Value)
			}
			return strings.Join(parts, "; "), nil
		}
		time.Sleep(time.Second)
	}
	return "", fmt.Errorf("trickle: could not log in as %s", name)
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "trickle:", msg)
	os.Exit(2)
}
