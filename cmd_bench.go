package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"flickrkillr/app"
	"flickrkillr/loadtest"
	"flickrkillr/loadtest/spawn"
)

// cmdBench runs a benchmark of this machine (not of the app): today one,
// `bench concurrency`, goroutines against OS threads.
func cmdBench(ctx context.Context, args []string, log *slog.Logger) error {
	if len(args) == 0 || args[0] != "concurrency" {
		return &app.UsageError{Msg: "usage: flickrkillr bench concurrency [flags]   (the only benchmark so far)"}
	}
	return cmdBenchConcurrency(ctx, args[1:], log)
}

func cmdBenchConcurrency(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench concurrency", flag.ContinueOnError)
	var sizes, cell, jsonPath string
	o := spawn.Options{}
	fs.StringVar(&sizes, "sizes", "100,1000,10000,100000", "numbers of tasks, comma-separated")
	fs.DurationVar(&o.Sleep, "sleep", 200*time.Millisecond, "how long each task of the time table sleeps")
	fs.IntVar(&o.Repeat, "repeat", 3, "runs of each time figure (the table shows the median and the spread)")
	fs.IntVar(&o.Threads.Max, "max-threads", 0, "ask for at most this many OS threads (0: what the kernel's limits allow, less a quarter for the rest of the machine)")
	fs.StringVar(&jsonPath, "json", "", "also write the table as JSON to this file")
	fs.StringVar(&cell, "cell", "", "internal: measure one cell, kind:measure:N, in this process and print it as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: flickrkillr bench concurrency [flags]\n\n"+
			"The gevent talks' two tables retold in Go: spawn N tasks that sleep, as goroutines and as\n"+
			"OS threads (locked goroutines), and measure the time until all finish and the memory while\n"+
			"all sleep. Each figure is measured in a fresh process. The talk's Python figures are shown beside.")
		fs.PrintDefaults()
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if cell != "" {
		return benchCell(cell, o)
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return &app.UsageError{Msg: fmt.Sprintf("--sizes must be positive numbers like 100,1000 (got %q)", sizes)}
		}
		o.Sizes = append(o.Sizes, n)
	}
	if o.Sleep <= 0 || o.Repeat < 1 {
		return &app.UsageError{Msg: "--sleep and --repeat must be positive"}
	}
	machine := spawn.MachineThreadLimit()
	if o.Threads.Max == 0 || o.Threads.Max > machine.Max {
		o.Threads = machine
	} else {
		o.Threads.Why = "--max-threads"
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	o.RunCell = func(ctx context.Context, kind, measure string, n int) (spawn.Cell, error) {
		return runCellProcess(ctx, exe, kind, measure, n, o)
	}
	o.Progress = func(kind, measure string, n int) {
		log.Info("measuring", "tasks", n, "as", kind+"s", "measure", measure)
	}
	t, err := spawn.Run(ctx, o)
	if err != nil {
		return err
	}
	if err := spawn.WriteText(os.Stdout, t); err != nil {
		return err
	}
	if jsonPath != "" {
		return loadtest.WriteJSON(jsonPath, t)
	}
	return nil
}

// runCellProcess measures one cell in a child process: a fresh heap for
// each memory figure, and a thread count the kernel refuses ends the child
// (the Go runtime cannot recover from it), not the table.
func runCellProcess(ctx context.Context, exe, kind, measure string, n int, o spawn.Options) (spawn.Cell, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "bench", "concurrency",
		"--cell", fmt.Sprintf("%s:%s:%d", kind, measure, n), "--sleep", o.Sleep.String(), "--repeat", strconv.Itoa(o.Repeat))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return spawn.Cell{}, fmt.Errorf("%v: %s", err, firstLines(stderr.String(), 2))
	}
	var c spawn.Cell
	if err := json.Unmarshal(stdout.Bytes(), &c); err != nil {
		return c, fmt.Errorf("the child's answer: %v", err)
	}
	return c, nil
}

func benchCell(spec string, o spawn.Options) error {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return &app.UsageError{Msg: "--cell is kind:measure:N"}
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return &app.UsageError{Msg: "--cell is kind:measure:N"}
	}
	c, err := spawn.Measure(parts[0], parts[1], n, o.Sleep, o.Repeat)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(c)
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], " / ")
}
