package app

// Stage 4: indexes. No Go changes: the code of stage 3 runs on a schema that
// has the indexes its hot queries need (migrations/00002_indexes.sql). A cache
// miss, a write and everything the cache does not hold stop scanning tables.
func init() {
	register(Stage{
		Number:  4,
		Name:    "indexes",
		Summary: "the indexes the hot queries need (one migration)",
		Note:    "**Buys:** no table scans. **Shows:** as the tags build it, on everything (the aggregate, every route, the p99). Each step alone: stages 0-3 already had the indexes, so the ratio is the run-to-run noise.",
		Schema:  2,
		Indexes: true, // stages 0-3 can run on this schema with --indexes
	})
}
