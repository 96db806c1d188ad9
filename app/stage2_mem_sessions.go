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
		Sessions: func(d *Deps) (scs.Store, error) {
			rdb, err := d.Redis()
			if err != nil {
				return nil, err
			}
			return redissessions.New(rdb), nil
		},
	})
}
