package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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

	rep, err := seed.Run(ctx, cfg.DatabaseURL, o)
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted: nothing was written (the seed runs in one transaction)")
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
	for _, t := range rep.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\n", t.Table, t.Rows, t.Duration.Seconds(), float64(t.Rows)/max(t.Duration.Seconds(), 1e-9))
	}
	for _, t := range rep.Steps {
		fmt.Fprintf(tw, "%s\t\t%.2f\t\t\n", t.Table, t.Duration.Seconds())
	}
	fmt.Fprintf(tw, "total\t\t%.2f\t\t\n", rep.Total.Seconds())
	tw.Flush()
	return nil
}
