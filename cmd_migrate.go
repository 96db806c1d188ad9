package main

import (
	"context"
	"fmt"
	"log/slog"

	"flickrkillr/app"
	"flickrkillr/migrations"
	"flickrkillr/models"
)

func cmdMigrate(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, fs, err := app.CommandConfig("migrate", "db", "stage", "indexes")
	if err != nil {
		return err
	}
	fs.Usage = func() {
		fs.Output().Write([]byte("Usage: flickrkillr migrate [--stage N] [--indexes]\n\nBrings the schema to what stage N needs: up, or down (stage 4's indexes are removed for stages 0-3,\nunless --indexes asks for stage N's code on the indexed schema).\n\n"))
		fs.PrintDefaults()
	}
	if err := app.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate("db", "stage", "indexes"); err != nil {
		return err
	}
	version, err := app.SchemaForRun(cfg.Stage, cfg.Indexes)
	if err != nil {
		return err
	}
	db, err := models.Open(ctx, cfg.DatabaseURL, models.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer models.Close(db)
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
	if err := migrations.To(ctx, sqlDB, version, logf); err != nil {
		return err
	}
	log.Info("schema ready", "stage", cfg.Stage, "indexes", cfg.Indexes || app.SchemaHasIndexes(cfg.Stage), "version", version)
	return nil
}
