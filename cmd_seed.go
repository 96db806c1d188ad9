package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"flickrkillr/app"
	"flickrkillr/seed"
)

func cmdSeed(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := app.CommandConfig("seed", "db", "data")
	if err != nil {
		return err
	}
	o := seed.Options{Progress: os.Stderr, IsTerminal: term.IsTerminal(int(os.Stderr.Fd()))}
	var perUser string
	var seedNum uint64
	fs.IntVar(&o.Users, "users", 100_000, "how many users (user1 … userN)")
	fs.StringVar(&perUser, "photos-per-user", "10-20", "photos per user, A-B")
	fs.Uint64Var(&seedNum, "seed", 1, "random seed: the same flags give the same rows")
	fs.BoolVar(&o.Reset, "reset", false, "replace the data of a non-empty database")
	fs.BoolVar(&o.IfEmpty, "if-empty", false, "seed only an empty database, otherwise do nothing (make run)")
	fs.IntVar(&o.Images, "images", 0, "distinct images in the pool (default: users/100, 40 to 300)")
	var shardCount int
	fs.IntVar(&shardCount, "shards", 0, "stage 10: spread the same data over N shards, the databases of SHARD_URLS\n(DATABASE_URL is then the ring)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flickrkillr seed [flags]\n\nGenerates the demo data set; every user's password is %q.\n\n", seed.Password)
		fs.PrintDefaults()
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate("db", "data"); err != nil {
		return err
	}
	lo, hi, ok := strings.Cut(perUser, "-")
	if !ok {
		hi = lo
	}
	var perr error
	if o.PhotosMin, perr = strconv.Atoi(lo); perr == nil {
		o.PhotosMax, perr = strconv.Atoi(hi)
	}
	if perr != nil {
		return &app.UsageError{Msg: fmt.Sprintf("--photos-per-user must look like 10-20, not %q", perUser)}
	}
	o.Seed, o.DataDir = seedNum, cfg.DataDir
	if err := o.Validate(); err != nil {
		return &app.UsageError{Msg: err.Error()}
	}

	if shardCount < 0 {
		return &app.UsageError{Msg: fmt.Sprintf("--shards must be 0 (no shards) or more, not %d", shardCount)}
	}
	var rep seed.Report
	if shardCount > 0 {
		var urls []string
		if urls, err = shardURLs(shardCount, cfg.DatabaseURL); err != nil {
			return err
		}
		rep, err = seed.RunShards(ctx, cfg.DatabaseURL, urls, o)
	} else {
		if os.Getenv("SHARD_URLS") != "" {
			log.Info("SHARD_URLS is set but --shards is not: seeding DATABASE_URL alone, unsharded")
		}
		rep, err = seed.Run(ctx, cfg.DatabaseURL, o)
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted: nothing was written (the seed runs in one transaction per database, committed once all have loaded)")
	}
	if err != nil {
		return err
	}
	if rep.Skipped {
		log.Info("the database already has data; not seeding (use `seed --reset` to replace it)")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stderr, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\trows\tseconds\trows/s\t")
	step := func(t seed.TableReport) string { return strings.TrimSpace(t.Database + " " + t.Table) }
	for _, t := range rep.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\n", step(t), t.Rows, t.Duration.Seconds(), float64(t.Rows)/max(t.Duration.Seconds(), 1e-9))
	}
	for _, t := range rep.Steps {
		fmt.Fprintf(tw, "%s\t\t%.2f\t\t\n", step(t), t.Duration.Seconds())
	}
	fmt.Fprintf(tw, "total\t\t%.2f\t\t\n", rep.Total.Seconds())
	tw.Flush()
	return nil
}

// shardURLs reads SHARD_URLS, stage 10's shards: comma-separated
// postgres:// URLs, shard 0 first, each its own database and none the ring.
// want > 0 is how many there must be (seed --shards N); 0 takes any number,
// none when the variable is empty (migrate).
func shardURLs(want int, ring string) ([]string, error) {
	v := os.Getenv("SHARD_URLS")
	if v == "" {
		if want > 0 {
			return nil, &app.ConfigError{Name: "SHARD_URLS", Msg: fmt.Sprintf("is not set: --shards %d needs %d postgres:// URLs, comma-separated (`make seed SHARDS=%d` starts local ones)", want, want, want)}
		}
		return nil, nil
	}
	var urls []string
	for i, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		parsed, err := url.Parse(u)
		switch {
		case err != nil || (parsed.Scheme != "postgres" && parsed.Scheme != "postgresql"):
			return nil, &app.ConfigError{Name: "SHARD_URLS", Msg: fmt.Sprintf("shard %d is not a postgres:// URL (comma-separated URLs, shard 0 first)", i)}
		case u == ring:
			return nil, &app.ConfigError{Name: "SHARD_URLS", Msg: fmt.Sprintf("shard %d is DATABASE_URL, the ring: each shard is a database of its own", i)}
		case slices.Contains(urls, u):
			return nil, &app.ConfigError{Name: "SHARD_URLS", Msg: fmt.Sprintf("shard %d is shard %d again: each shard is a database of its own", i, slices.Index(urls, u))}
		}
		urls = append(urls, u)
	}
	if want > 0 && len(urls) != want {
		return nil, &app.ConfigError{Name: "SHARD_URLS", Msg: fmt.Sprintf("has %d URLs, but --shards is %d", len(urls), want)}
	}
	return urls, nil
}
