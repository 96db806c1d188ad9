package main

import (
	"context"
	"fmt"
	"log/slog"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func cmdSeed(ctx context.Context, args []string, log *slog.Logger) error {
	return fmt.Errorf("seed: not built yet")
}

func cmdLoadtest(ctx context.Context, args []string, log *slog.Logger) error {
	return fmt.Errorf("loadtest: not built yet")
}
