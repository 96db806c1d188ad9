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
		fs.Output().Write([]byte("Usage: flickrkillr migrate [--stage N] [--indexes]\n\nBrings the schema to what stage N needs: up, or down (stage 4's indexes are removed for stages 0-3,\nunless --indexes asks for stage N's code on the indexed schema). With SHARD_URLS set (stage 10),\nthe ring (DATABASE_URL) and every shard go to the same version, with the federation's tables.\n\n"))
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
	shards, err := shardURLs(0, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		if err := migrateOne(ctx, cfg.DatabaseURL, version, "", log); err != nil {
			return err
		}
		log.Info("schema ready", "stage", cfg.Stage, "indexes", cfg.Indexes || app.SchemaHasIndexes(cfg.Stage), "version", version)
		return nil
	}
	// Stage 10: every database of the federation has the same schema, and
	// it has the federation's tables whatever the stage asked for.
	version = max(version, federationSchema)
	log.Info(fmt.Sprintf("SHARD_URLS is set: migrating the ring (DATABASE_URL) and %d shards to version %d", len(shards), version))
	if err := migrateOne(ctx, cfg.DatabaseURL, version, "ring", log); err != nil {
		return err
	}
	for k, u := range shards {
		if err := migrateOne(ctx, u, version, fmt.Sprintf("shard %d", k), log); err != nil {
			return err
		}
	}
	log.Info("schema ready on the ring and every shard", "shards", len(shards), "version", version)
	return nil
}

// federationSchema is the first version with stage 10's tables
// (migrations/00005_federation.sql).
const federationSchema = 5

// migrateOne brings the database at dsn to version; its lines start with
// name when there are several databases.
func migrateOne(ctx context.Context, dsn string, version int64, name string, log *slog.Logger) error {
	db, err := models.Open(ctx, dsn, models.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer models.Close(db)
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
	if name != "" {
		logf = func(format string, args ...any) { log.Info(name + ": " + fmt.Sprintf(format, args...)) }
	}
	if err := migrations.To(ctx, sqlDB, version, logf); err != nil {
		if name != "" {
			return fmt.Errorf("%s: %w", name, err)
		}
		return err
	}
	return nil
}
