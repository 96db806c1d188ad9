// Command samepages checks that a refactor keeps the pages: it builds
// flickrkillr at two revisions, serves each stage both builds have with one
// and then the other on the same small database, fetches a fixed list of
// pages as an anonymous visitor and as two logged-in users, and compares
// status, content type, redirect target and body byte for byte (after the
// masks in pages.go, which today mask nothing: see there why).
//
//	scripts/samepages.sh BASE [HEAD]          # HEAD: a revision, default the working tree
//	go run ./scripts/samepages --base 63bdc0c --stages 0,3
//
// Exit 0: every page of every compared stage the same; 1: a difference
// (stage, page, user and a unified diff are printed); 2: the run could not
// be made (a build, the database, a server that does not start, a page that
// is not what the comparison needs, such as a logged-in page without its
// user). Stages 7 and 8 start nginx, redis-server, pgbouncer (and memcached):
// a stage whose tools are missing is skipped with a line that says so.
//
// The database is a throw-away one on the PostgreSQL of TEST_DATABASE_URL
// (scripts/pg.sh start test): seeded once, then each server gets a fresh
// copy of it (CREATE DATABASE … TEMPLATE), migrated by that server's own
// binary to the stage's schema. A fresh copy per server matters: logging in
// writes sessions and throttle rows, and the pages must not see what the
// other build's run left.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options is one comparison.
type Options struct {
	Repo   string // the git checkout to build from
	Base   string // the revision whose pages are the reference
	Head   string // the revision compared with it; "" is Repo's working tree
	Stages []int  // nil: every stage both builds have

	// BaseBin and HeadBin, when set, are binaries already built from Base
	// and Head (which then only name them in the report).
	BaseBin, HeadBin string
	AdminURL         string // a PostgreSQL URL allowed to create and drop databases
	Out              io.Writer
}

// Result counts what a comparison did.
type Result struct {
	Stages      []int // the stages compared (not skipped)
	Pages       int   // pages compared, over all stages
	Differences int   // pages that differ
}

func main() {
	var o Options
	var stages string
	flag.StringVar(&o.Repo, "repo", ".", "the git checkout to build from")
	flag.StringVar(&o.Base, "base", "", "the reference revision (required)")
	flag.StringVar(&o.Head, "head", "", "the revision to compare; empty: the working tree")
	flag.StringVar(&stages, "stages", "", "comma-separated stages; empty: every stage both builds have")
	flag.StringVar(&o.AdminURL, "database-url", os.Getenv("TEST_DATABASE_URL"), "PostgreSQL URL that may create databases (env TEST_DATABASE_URL)")
	flag.Parse()
	if o.Base == "" || o.AdminURL == "" {
		fmt.Fprintln(os.Stderr, "samepages: needs --base and a database (--database-url or TEST_DATABASE_URL)")
		os.Exit(2)
	}
	for _, s := range strings.FieldsFunc(stages, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "samepages: --stages: %q is not a number\n", s)
			os.Exit(2)
		}
		o.Stages = append(o.Stages, n)
	}
	o.Out = os.Stdout
	start := time.Now()
	res, err := Run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "samepages:", err)
		os.Exit(2)
	}
	fmt.Printf("samepages: %d stages, %d pages compared, %d differ (%s)\n",
		len(res.Stages), res.Pages, res.Differences, time.Since(start).Round(time.Second))
	if res.Differences > 0 {
		os.Exit(1)
	}
}

// Run makes the comparison and prints what it finds to o.Out.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	withSbin()
	repo, err := filepath.Abs(o.Repo)
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "samepages-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	baseName, headName := describe(repo, o.Base), describe(repo, o.Head)
	fmt.Fprintf(o.Out, "samepages: BASE %s, HEAD %s\n", baseName, headName)
	t0 := time.Now()
	baseBin, headBin := o.BaseBin, o.HeadBin
	if baseBin == "" {
		if baseBin, err = build(repo, o.Base, tmp, "base"); err != nil {
			return res, err
		}
	}
	if headBin == "" {
		if headBin, err = build(repo, o.Head, tmp, "head"); err != nil {
			return res, err
		}
	}
	baseStages, err := stagesOf(baseBin)
	if err != nil {
		return res, err
	}
	headStages, err := stagesOf(headBin)
	if err != nil {
		return res, err
	}

	db, err := newDatabases(ctx, o.AdminURL, fmt.Sprintf("samepages_%d", os.Getpid()))
	if err != nil {
		return res, err
	}
	defer db.close(context.Background())
	dataDir := filepath.Join(tmp, "photos")
	t1 := time.Now()
	if err := db.seed(ctx, headBin, dataDir); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Out, "samepages: binaries ready in %s, database seeded in %s\n", t1.Sub(t0).Round(100*time.Millisecond), time.Since(t1).Round(100*time.Millisecond))

	stages := o.Stages
	if stages == nil {
		stages = common(baseStages, headStages)
		for n := range baseStages {
			if _, ok := headStages[n]; !ok {
				fmt.Fprintf(o.Out, "stage %d: skipped, HEAD has no stage %d\n", n, n)
			}
		}
		for n := range headStages {
			if _, ok := baseStages[n]; !ok {
				fmt.Fprintf(o.Out, "stage %d: skipped, BASE has no stage %d (new in HEAD)\n", n, n)
			}
		}
	}
	for _, n := range stages {
		if _, ok := baseStages[n]; !ok {
			return res, fmt.Errorf("BASE has no stage %d", n)
		}
		if _, ok := headStages[n]; !ok {
			return res, fmt.Errorf("HEAD has no stage %d", n)
		}
		if tool := missing(n); tool != "" {
			fmt.Fprintf(o.Out, "stage %d: skipped, needs %s (not on PATH or in /usr/sbin)\n", n, tool)
			continue
		}
		t0 := time.Now()
		srv := server{db: db, dataDir: dataDir, tmp: tmp, stage: n}
		base, err := srv.pages(ctx, baseBin, "base")
		if err != nil {
			return res, fmt.Errorf("stage %d, BASE: %w", n, err)
		}
		head, err := srv.pages(ctx, headBin, "head")
		if err != nil {
			return res, fmt.Errorf("stage %d, HEAD: %w", n, err)
		}
		diffs := compare(o.Out, n, base, head)
		res.Stages = append(res.Stages, n)
		res.Pages += len(head)
		res.Differences += diffs
		if diffs == 0 {
			fmt.Fprintf(o.Out, "stage %d (%s): %d pages byte-equal (%s)\n", n, headStages[n], len(head), time.Since(t0).Round(100*time.Millisecond))
		} else {
			fmt.Fprintf(o.Out, "stage %d (%s): %d of %d pages differ\n", n, headStages[n], diffs, len(head))
		}
	}
	return res, nil
}
