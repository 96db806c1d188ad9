// Command modelperiod measures what the scale model's CFS period costs a
// host's latency (docs/scale-model.md): for each period and quota it makes a
// host (app/scalemodel), runs a busy loop in it (a saturated host: the
// bottleneck) and a latency probe beside it, and prints the CPU the host used
// against its quota and how late the probe's 2 ms sleeps woke up (p50, p99,
// max). A throttled host stalls everything in it until the next period:
// up to (1 - quota) × period.
//
//	go run ./scripts/modelperiod --periods 10ms,20ms,100ms --quotas 0.15,0.6 --seconds 5 --rounds 2
//	go run ./scripts/modelperiod --busy=false   # the probe alone: the machine's own noise
//
// Needs root and a cpu controller (cgroup v1 cpu+cpuacct, or v2).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"flickrkillr/app/scalemodel"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "probe" {
		probe(os.Args[2])
		return
	}
	periods := flag.String("periods", "10ms,20ms,100ms", "CFS periods to compare")
	quotas := flag.String("quotas", "0.15,0.6", "host sizes (CPUs) to compare")
	seconds := flag.Int("seconds", 5, "seconds per run")
	busy := flag.Bool("busy", true, "run a busy loop beside the probe (a saturated host)")
	rounds := flag.Int("rounds", 1, "repeat the table (the machine's other load varies)")
	flag.Parse()
	for round := 1; round <= *rounds; round++ {
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("round %d, load average %s", round, load)
		table(*periods, *quotas, *seconds, *busy)
	}
}

func table(periods, quotas string, seconds int, busy bool) {
	fmt.Printf("%-7s %-6s %-6s %-10s %-9s %-9s %-9s %s\n", "period", "quota", "used", "throttled", "late p50", "late p99", "late max", "probe wake-ups")
	for _, ps := range strings.Split(periods, ",") {
		period, err := time.ParseDuration(ps)
		if err != nil {
			fail(err)
		}
		for _, qs := range strings.Split(quotas, ",") {
			q, err := strconv.ParseFloat(qs, 64)
			if err != nil {
				fail(err)
			}
			if err := run(period, q, time.Duration(seconds)*time.Second, busy); err != nil {
				fail(err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "modelperiod:", err)
	os.Exit(1)
}

type probeResult struct {
	N             int
	P50, P99, Max float64 // ms late
}

func run(period time.Duration, quota float64, d time.Duration, busy bool) error {
	spec := scalemodel.DefaultSpec()
	spec.Quotas[scalemodel.RoleApp] = quota
	spec.Period = period
	m, err := scalemodel.New(spec, scalemodel.Options{Prefix: "flickrkillr-modelperiod"})
	if err != nil {
		return err
	}
	defer m.Close()
	h, err := m.NewHost("app-1", scalemodel.RoleApp)
	if err != nil {
		return err
	}
	if busy {
		if _, err := h.Start(exec.Command("sh", "-c", "while :; do :; done")); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "probe", d.String())
	cmd.Env = append(os.Environ(), h.Env()...)
	out := &strings.Builder{}
	cmd.Stdout = out
	mk := m.Mark()
	p, err := h.Start(cmd)
	if err != nil {
		return err
	}
	if err := p.Wait(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	st := m.Since(mk)[0]
	var r probeResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		return fmt.Errorf("probe said %q: %w", out.String(), err)
	}
	fmt.Printf("%-7v %-6.2f %-6.3f %-10s %-9s %-9s %-9s %d\n", period, quota, st.Used,
		fmt.Sprintf("%.0f%%", st.Throttled*100), ms(r.P50), ms(r.P99), ms(r.Max), r.N)
	return nil
}

func ms(v float64) string { return fmt.Sprintf("%.1fms", v) }

// probe sleeps 2 ms at a time for d and reports how late it woke: the wait
// a request arriving at a throttled host would see before it runs at all.
func probe(ds string) {
	d, err := time.ParseDuration(ds)
	if err != nil {
		fail(err)
	}
	const nap = 2 * time.Millisecond
	var late []float64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		time.Sleep(nap)
		late = append(late, float64(time.Since(t0)-nap)/float64(time.Millisecond))
	}
	slices.Sort(late)
	at := func(p float64) float64 { return late[int(p*float64(len(late)-1))] }
	json.NewEncoder(os.Stdout).Encode(probeResult{N: len(late), P50: at(0.5), P99: at(0.99), Max: late[len(late)-1]})
}
