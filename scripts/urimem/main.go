// Command urimem measures what anonymous requests with unique long query
// strings cost a server's memory (issue 31, docs/reliability.md): it sends
// --requests GETs, each with a query string of --query bytes that no page
// reads, to the home page and to pages that do not exist (404s), and
// prints the server's resident set size (/proc/<pid>/status, the pid from
// /healthz) before, at its peak (sampled every 20 ms) and after. Traffic
// goes only to the --url given, which must be local.
//
//	go run ./scripts/urimem --url http://127.0.0.1:18080 --requests 20000 --query 32768
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the server (local only)")
	n := flag.Int("requests", 20000, "requests to send")
	size := flag.Int("query", 32<<10, "bytes of each request's query string")
	conc := flag.Int("concurrency", 8, "requests at once")
	flag.Parse()
	u, err := url.Parse(*base)
	if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		fail("--url must be http://127.0.0.1:PORT")
	}
	var hz struct{ PID int }
	res, err := http.Get(*base + "/healthz")
	if err != nil {
		fail(err.Error())
	}
	json.NewDecoder(res.Body).Decode(&hz)
	res.Body.Close()
	if hz.PID == 0 {
		fail("/healthz names no pid")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	get := func(path string) int {
		res, err := client.Get(*base + path)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for range 50 { // the pages' views are cached and remembered before the baseline
		get("/")
		get("/users/nobody-here")
	}
	time.Sleep(2 * time.Second)
	before := rss(hz.PID)

	var peak atomic.Int64
	peak.Store(before)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if r := rss(hz.PID); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	var next, errors atomic.Int64
	codes := map[int]int{}
	var mu sync.Mutex
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(*n) {
					return
				}
				q := "x=" + strconv.FormatInt(i, 10) + "-" + randomText(*size-len(strconv.FormatInt(i, 10))-3)
				path := "/?" + q
				if i%2 == 0 {
					path = "/users/nobody" + strconv.FormatInt(i, 10) + "?" + q
				}
				code := get(path)
				if code == 0 {
					errors.Add(1)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	time.Sleep(2 * time.Second)
	close(stop)
	after := rss(hz.PID)
	fmt.Printf("%d requests with %d-byte query strings in %s (%.0f req/s), answers %v, %d errors\n",
		*n, *size, took.Round(time.Millisecond), float64(*n)/took.Seconds(), codes, errors.Load())
	fmt.Printf("RSS before %d MB, peak %d MB, after %d MB: grew %+d MB (peak %+d MB)\n",
		before>>20, peak.Load()>>20, after>>20, (after-before)>>20, (peak.Load()-before)>>20)
}

const letters = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomText(n int) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(letters[rand.IntN(len(letters))])
	}
	return b.String()
}

// rss is the process's resident set size in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fail(err.Error())
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	fail("no VmRSS")
	return 0
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "urimem:", msg)
	os.Exit(1)
}
