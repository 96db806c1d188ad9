package app

import (
	"github.com/alexedwards/scs/v2"

	"flickrkillr/models/redissessions"
)

// Stage 2: sessions move out of PostgreSQL into an in-memory store that all
// instances can share: the Redis protocol, an embedded miniredis by default,
// a real Redis with REDIS_URL. The sessions table is no longer touched.
func init() {
	register(Stage{
		Number:  2,
		Name:    "mem-sessions",
		Summary: "sessions in an in-memory store (Redis protocol), not in PostgreSQL",
		Note:    "**Buys:** sessions stop loading the database. **Shows:** each step alone, on the aggregate and the PostgreSQL CPU per request; as the tags build it, within the noise behind the scans (`upload-form`, the session and nothing else, waits in the server's in-flight line with the pages that scan).",
		Sessions: func(d *Deps) (scs.Store, error) {
			rdb, err := d.Redis()
			if err != nil {
				return nil, err
			}
			return redissessions.New(rdb), nil
		},
	})
}
