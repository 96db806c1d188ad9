package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
)

// The writes scenario: stage 10's measure (users' data on shards). Virtual
// users log in as seeded users, as in browse, and mostly write: comments,
// favorite toggles and uploads, with the photo pages a writer reads to find
// what to write on. The photos are drawn with the browse mix's skew, and
// the users are the seeded users the virtual users log in as (drawn
// uniformly), so that the writes of a run spread over many owners and
// favers: on a sharded server, over the shards. The weights and why are in
// docs/loadtest.md ("Writes").
var writesMix = newMix(
	// Comments land on the photo's side; each is read back (comment).
	action{"comment", 40, comment},
	// Favorites are the write with two sides (the faver's and the photo's).
	action{"favorite", 35, favoriteToggle},
	action{"photo", 20, func(ctx context.Context, vu *vuser, b *browse) {
		vu.get(ctx, "photo", "/photos/"+b.photo(vu.rng), isPhoto)
	}},
	// Uploads are few: each is a 12-megapixel JPEG (upload.go).
	action{"upload", 5, func(ctx context.Context, vu *vuser, b *browse) {
		vu.shared.(*uploads).upload(ctx, vu)
	}},
)

// writesSetup learns what browse learns and makes the upload scenario's
// form; the teardown deletes the uploads without waiting for the workers.
func writesSetup(ctx context.Context, c *client, o Options, info ServerInfo) (any, error) {
	u, err := uploadSetup(ctx, c, o, info)
	if err != nil {
		return nil, err
	}
	u.(*uploads).drain = false
	return u, nil
}

func writesStep(ctx context.Context, vu *vuser) {
	writesMix.step(ctx, vu, vu.shared.(*uploads).browse)
}

// favoriteToggle flips the user's favorite on a photo, as the star on its
// page does: on half of the toggles the photo is one the user favorited
// earlier in the run (when it holds any), on the others one drawn as
// browse draws them. A photo the user holds is unfavorited (route
// unfavorite), any other favorited (route favorite): every toggle changes
// a row, and the run's favorites stay about as many as it holds. The user
// knows only its own favorites of the run: one the seed gave it is
// favorited again (a no-op) before a later toggle removes it.
func favoriteToggle(ctx context.Context, vu *vuser, b *browse) {
	var photo string
	if len(vu.faves) > 0 && vu.rng.IntN(2) == 0 {
		photo = vu.faves[vu.rng.IntN(len(vu.faves))]
	} else {
		photo = "/photos/" + b.photo(vu.rng)
	}
	i := slices.Index(vu.faves, photo)
	route, act := "favorite", "add"
	if i >= 0 {
		route, act = "unfavorite", "remove"
	}
	if _, err := vu.post(ctx, route, photo+"/favorite", url.Values{"action": {act}}, redirectsTo(photo)); err != nil {
		return
	}
	if i >= 0 {
		vu.faves = slices.Delete(vu.faves, i, i+1)
	} else {
		vu.faves = append(vu.faves, photo)
	}
}

// redirectsTo is a 303 back to the photo's page (a favorite's answer). It
// is built per request, unlike the package's other checks: it needs the
// photo, and a write's cost on the server dwarfs the closure's.
func redirectsTo(photo string) check {
	return func(res *response) error {
		if res.status != http.StatusSeeOther || string(res.location) != photo {
			return fmt.Errorf("status %d, Location %q; want 303 to the photo", res.status, res.location)
		}
		return nil
	}
}
