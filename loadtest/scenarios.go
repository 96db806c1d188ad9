package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"flickrkillr/seed"
)

// scenario is a kind of traffic: what it learns before the run, how a
// virtual user logs in, and one step (one weighted action) of a user.
type scenario struct {
	setup func(ctx context.Context, c *client, o Options, info ServerInfo) (any, error)
	login func(ctx context.Context, vu *vuser) error
	step  func(ctx context.Context, vu *vuser)
	// teardown, if set, runs for each user after the run (upload: delete
	// what it uploaded).
	teardown func(ctx context.Context, vu *vuser)
}

var scenarios = map[string]scenario{
	"browse": {setup: browseSetup, login: browseLogin, step: browseStep},
	"upload": {setup: uploadSetup, login: uploadLogin, step: uploadStep, teardown: uploadTeardown},
	// writes: comments, favorite toggles and uploads (writes.go), stage 10's mix.
	"writes": {setup: writesSetup, login: uploadLogin, step: writesStep, teardown: uploadTeardown},
	// signin-storm: every user signs in in a loop (signin.go's stormStep),
	// to run beside a browse run.
	"signin-storm": {setup: browseSetup, step: stormStep},
	// static is the trivial endpoint for comparing this tool with wrk: no
	// log-in, no cookie jar, the smallest cost per request on both sides.
	"static": {
		setup: func(context.Context, *client, Options, ServerInfo) (any, error) { return nil, nil },
		step: func(ctx context.Context, vu *vuser) {
			vu.get(ctx, "static", "/static/style.css", isOK)
		},
	},
}

func scenarioNames() string {
	var names []string
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// An action of the browse mix, with its weight out of the sum of weights.
type action struct {
	name   string
	weight int
	run    func(ctx context.Context, vu *vuser, b *browse)
}

// A mix is a list of actions drawn by weight.
type mix struct {
	actions []action
	total   int // the sum of the weights
}

func newMix(actions ...action) mix {
	m := mix{actions: actions}
	for _, a := range actions {
		m.total += a.weight
	}
	return m
}

// step runs one action of the mix, drawn by weight.
func (m mix) step(ctx context.Context, vu *vuser, b *browse) {
	n := vu.rng.IntN(m.total)
	for _, a := range m.actions {
		if n < a.weight {
			a.run(ctx, vu, b)
			return
		}
		n -= a.weight
	}
}

// A reader says how one kind of visitor makes the browse mix's reads: the
// prefix of its routes, the checks of its pages (the page, and what only its
// kind of visitor sees on it), and how it reads a listing (a user's or a
// tag's page).
type reader struct {
	prefix                 string
	home, photo, user, tag check
	listing                func(ctx context.Context, vu *vuser, route, path string, ok check)
}

// reads is the browse mix's reads with their weights, as r makes them: the
// logged-in visitors' (below) and the anonymous ones' (anonymous.go) are the
// same reads with the same weights and the same choices of photo, user and tag.
func reads(r reader) []action {
	home, photo, thumb, image, user, tag := r.prefix+"home", r.prefix+"photo", r.prefix+"thumb", r.prefix+"image", r.prefix+"user", r.prefix+"tag"
	return []action{
		{home, 10, func(ctx context.Context, vu *vuser, b *browse) {
			vu.get(ctx, home, "/", r.home)
		}},
		{photo, 28, func(ctx context.Context, vu *vuser, b *browse) {
			vu.get(ctx, photo, "/photos/"+b.photo(vu.rng), r.photo)
		}},
		{thumb, 23, func(ctx context.Context, vu *vuser, b *browse) {
			vu.get(ctx, thumb, b.image(vu.rng, b.thumbs, "/thumb"), isJPEG)
		}},
		{image, 5, func(ctx context.Context, vu *vuser, b *browse) {
			vu.get(ctx, image, b.image(vu.rng, b.images, "/image"), isJPEG)
		}},
		{user, 12, func(ctx context.Context, vu *vuser, b *browse) {
			r.listing(ctx, vu, user, "/users/"+b.user(vu.rng), r.user)
		}},
		{tag, 10, func(ctx context.Context, vu *vuser, b *browse) {
			r.listing(ctx, vu, tag, "/tags/"+b.tag(vu.rng), r.tag)
		}},
	}
}

// browseMix is what a logged-in visitor of a photo site does: mostly photo
// pages and thumbnails, some home, user and tag pages, a few writes.
var browseMix = newMix(append(reads(reader{
	home:  isHome,
	photo: isPhoto,
	user:  isUser,
	tag:   isTag,
	listing: func(ctx context.Context, vu *vuser, route, path string, ok check) {
		vu.get(ctx, route, path, ok)
	},
}),
	// The upload form needs nothing but the session: the route on which the
	// session stages show when the photo pages' queries hide them.
	action{"upload-form", 4, func(ctx context.Context, vu *vuser, b *browse) {
		vu.get(ctx, "upload-form", "/upload", isUploadForm)
	}},
	action{"favorite", 5, func(ctx context.Context, vu *vuser, b *browse) {
		act := "add"
		if vu.rng.IntN(2) == 0 {
			act = "remove"
		}
		vu.post(ctx, "favorite", "/photos/"+b.photo(vu.rng)+"/favorite", url.Values{"action": {act}}, isRedirect)
	}},
	action{"comment", 3, comment},
)...)

// comment posts a comment on a photo and reads the photo page back: the
// comment must be on the very next read (stage 3's cache must have been
// invalidated, stage 9's replicas must read the user's own writes); a miss
// is the comment's error. The browse and writes mixes both comment so.
func comment(ctx context.Context, vu *vuser, b *browse) {
	photo := "/photos/" + b.photo(vu.rng)
	token := fmt.Sprintf("lt-%d-%d", vu.id, vu.rng.Uint64())
	if _, err := vu.post(ctx, "comment", photo+"/comments", url.Values{"body": {"Nice one! " + token}}, isRedirect); err != nil {
		return
	}
	body, err := vu.get(ctx, "photo", photo, isOK)
	if err == nil && !strings.Contains(string(body), token) && ctx.Err() == nil {
		vu.rec.record("comment", 0, 0, fmt.Errorf("posted comment not visible on the next read"))
		vu.errs.Add(1)
	}
}

// browse is what the virtual users share: the data's shape, learned at setup.
type browse struct {
	o      Options
	photos int      // the newest photo's id: ids 1..photos
	users  int      // seeded users user1..userN
	tags   []string // the popular tags, most popular first
	// thumbs and images are the file URLs the pages link when a front
	// server serves photo files by key (stage 7's /files/…), learned from
	// the pages at setup; empty when pages link the app's own image routes.
	thumbs, images []string
	photoCDF       []float64 // hot photos: a Zipf-like skew over ranks
	userCDF        []float64
	tagCDF         []float64
	step           int
}

var photoLinkRE = regexp.MustCompile(`href="/photos/(\d+)"`)
var fileThumbRE = regexp.MustCompile(`<img src="(/files/[^"]+)_thumb\.jpg"`)
var tagLinkRE = regexp.MustCompile(`href="/tags/([a-z0-9-]+)"`)

func browseSetup(ctx context.Context, c *client, o Options, info ServerInfo) (any, error) {
	home, err := fetch(ctx, c, "/")
	if err != nil {
		return nil, err
	}
	b := &browse{o: o}
	for _, m := range photoLinkRE.FindAllStringSubmatch(home, -1) {
		b.photos = max(b.photos, atoi(m[1]))
	}
	seen := map[string]bool{}
	for _, m := range tagLinkRE.FindAllStringSubmatch(home, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			b.tags = append(b.tags, m[1])
		}
	}
	if b.photos == 0 || len(b.tags) == 0 {
		return nil, fmt.Errorf("the server has no photos or tags: seed it first (make seed)")
	}
	// Stage 7: the pages link photo files that nginx serves; the image
	// actions ask for those, as a browser would (from the home page and the
	// most popular tags' pages).
	pages := []string{home}
	if fileThumbRE.MatchString(home) {
		for _, tag := range b.tags[:min(3, len(b.tags))] {
			page, err := fetch(ctx, c, "/tags/"+tag)
			if err != nil {
				return nil, err
			}
			pages = append(pages, page)
		}
	}
	files := map[string]bool{}
	for _, page := range pages {
		for _, m := range fileThumbRE.FindAllStringSubmatch(page, -1) {
			if !files[m[1]] {
				files[m[1]] = true
				b.thumbs, b.images = append(b.thumbs, m[1]+"_thumb.jpg"), append(b.images, m[1]+".jpg")
			}
		}
	}
	// The seeded users are user1..userN: find N (the row estimate may count
	// users who signed up by hand).
	hi := int(max(info.Rows["users"], 1))
	lo := 0
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if ok, err := exists(ctx, c, "/users/user"+strconv.Itoa(mid)); err != nil {
			return nil, err
		} else if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == 0 {
		return nil, fmt.Errorf("no seeded users (user1 …) on the server: seed it first (make seed)")
	}
	b.users = lo
	b.photoCDF = seed.ZipfCDF(b.photos, 0.8)
	b.userCDF = seed.ZipfCDF(b.users, 0.9)
	b.tagCDF = seed.ZipfCDF(len(b.tags), 1.0)
	b.step = seed.CoprimeStep(b.photos)
	return b, nil
}

func browseLogin(ctx context.Context, vu *vuser) error {
	return logIn(ctx, vu, vu.shared.(*browse))
}

// logIn logs the user in as a random seeded user. The server runs a few
// bcrypt checks at a time and sheds the rest with a 503 and Retry-After
// (docs/reliability.md): all users logging in at once wait and retry as
// signIn says, until the run ends.
func logIn(ctx context.Context, vu *vuser, b *browse) error {
	name := "user" + strconv.Itoa(1+vu.rng.IntN(b.users))
	return vu.signIn(ctx, "login", "/login", "log in as "+name, url.Values{"name": {name}, "password": {b.o.Password}})
}

func browseStep(ctx context.Context, vu *vuser) {
	b := vu.shared.(*browse)
	if vu.anonymous {
		anonymousMix.step(ctx, vu, b)
		return
	}
	browseMix.step(ctx, vu, b)
}

func (b *browse) photo(r *rand.Rand) string {
	rank := seed.Pick(r, b.photoCDF)
	return strconv.Itoa(rank*b.step%b.photos + 1)
}

// image is a photo file's URL: one the pages link (files), or the app's
// route (suffix /thumb or /image) of a random photo.
func (b *browse) image(r *rand.Rand, files []string, suffix string) string {
	if len(files) > 0 {
		return files[r.IntN(len(files))]
	}
	return "/photos/" + b.photo(r) + suffix
}

func (b *browse) user(r *rand.Rand) string {
	return "user" + strconv.Itoa(seed.Pick(r, b.userCDF)*7919%b.users+1)
}

func (b *browse) tag(r *rand.Rand) string { return b.tags[seed.Pick(r, b.tagCDF)] }

// fetch GETs a page the run needs to know about before it starts.
func fetch(ctx context.Context, c *client, path string) (string, error) {
	var res response
	if err := c.do(ctx, http.MethodGet, path, nil, &res); err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	if res.status != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", path, res.status)
	}
	return string(res.body), nil
}

func exists(ctx context.Context, c *client, path string) (bool, error) {
	var res response
	if err := c.do(ctx, http.MethodGet, path, nil, &res); err != nil {
		return false, fmt.Errorf("GET %s: %w", path, err)
	}
	return res.status == http.StatusOK, nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
