package seed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// The data set's timeline: Flickr's first years, up to the PyCon 2007 talk.
var (
	timelineStart = time.Date(2004, 3, 1, 0, 0, 0, 0, time.UTC)
	timelineEnd   = time.Date(2007, 2, 20, 0, 0, 0, 0, time.UTC)
)

// Salts separate the random streams, so that every table is a pure function
// of (--seed, row number) and can be generated in any order.
const (
	saltCounts uint64 = iota + 1
	saltOwners
	saltUsers
	saltPhotos
	saltTags
	saltFavorites
	saltComments
	saltHot
)

// plan is everything decided before the rows are written.
type plan struct {
	seed       uint64
	users      int
	photos     int
	favorites  int // expected, for progress
	comments   int
	owners     []int32 // photo id-1 → owner user id
	firstPhoto []int32 // user id-1 → their first photo id
	tags       []string
	tagCDF     []float64 // Zipf-like tag popularity
	userCDF    []float64 // who is active (favorites, comments)
	photoCDF   []float64 // which photos are hot
	photoStep  int       // rank → photo id bijection: spreads hot photos over time
	userStep   int       // rank → user id bijection
	images     int
}

func newPlan(seed uint64, users, minP, maxP, images int) *plan {
	p := &plan{seed: seed, users: users, images: images}
	// Photos per user, then owners shuffled over the timeline so that every
	// user's photos are spread over the years and photo ids follow time.
	counts := rand.New(rand.NewPCG(seed, saltCounts))
	p.owners = make([]int32, 0, users*(minP+maxP)/2)
	for u := 1; u <= users; u++ {
		n := minP + counts.IntN(maxP-minP+1)
		for range n {
			p.owners = append(p.owners, int32(u))
		}
	}
	p.photos = len(p.owners)
	shuffle := rand.New(rand.NewPCG(seed, saltOwners))
	shuffle.Shuffle(len(p.owners), func(i, j int) { p.owners[i], p.owners[j] = p.owners[j], p.owners[i] })
	p.firstPhoto = make([]int32, users)
	for i := len(p.owners) - 1; i >= 0; i-- {
		p.firstPhoto[p.owners[i]-1] = int32(i + 1)
	}

	p.tags = vocabulary(1000)
	p.tagCDF = ZipfCDF(len(p.tags), 1.0)
	p.userCDF = ZipfCDF(users, 0.9)
	p.photoCDF = ZipfCDF(p.photos, 0.8)
	p.photoStep = CoprimeStep(p.photos)
	p.userStep = CoprimeStep(users)
	p.favorites = p.photos
	p.comments = p.photos / 3
	return p
}

// vocabulary is the tag list: the words, then compounds, up to n.
func vocabulary(n int) []string {
	seen := map[string]bool{}
	var out []string
	add := func(t string) {
		if !seen[t] && len(out) < n {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, w := range tagWords {
		add(w)
	}
	for _, m := range tagModifiers {
		for _, w := range tagWords {
			add(m + w)
		}
	}
	return out
}

// ZipfCDF is the cumulative distribution of ranks 1..n with weight 1/rank^s:
// the skew of the data set, which the load tool reuses to choose what to read.
func ZipfCDF(n int, s float64) []float64 {
	cdf := make([]float64, n)
	var sum float64
	for i := range n {
		sum += math.Pow(float64(i+1), -s)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	return cdf
}

// Pick draws a 0-based rank from a CDF made by ZipfCDF.
func Pick(r *rand.Rand, cdf []float64) int {
	return min(sort.SearchFloat64s(cdf, r.Float64()), len(cdf)-1)
}

// CoprimeStep returns a step coprime with n, so that rank*step mod n visits
// every photo once: the hottest photos are spread over the whole timeline.
func CoprimeStep(n int) int {
	if n <= 1 {
		return 1
	}
	step := 1_000_003 % n
	for gcd(step, n) != 1 || step == 0 {
		step++
		step %= n
	}
	return step
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// hotPhoto draws a photo id, popular ones far more often.
func (p *plan) hotPhoto(r *rand.Rand) int64 {
	rank := Pick(r, p.photoCDF)
	return int64(rank*p.photoStep%p.photos) + 1
}

// hotUser draws a user id, active ones far more often.
func (p *plan) hotUser(r *rand.Rand) int64 { return p.userAt(Pick(r, p.userCDF)) }

// userAt is the user of activity rank rank (a bijection, like photos').
func (p *plan) userAt(rank int) int64 { return int64(rank*p.userStep%p.users) + 1 }

// uploadSpread is how long after its photoTime a photo is uploaded, at most.
const uploadSpread = time.Hour

// photoTime is when photo id was uploaded (within uploadSpread): ids follow
// time, as on a real site.
func (p *plan) photoTime(id int64) time.Time {
	span := timelineEnd.Sub(timelineStart)
	return timelineStart.Add(time.Duration(float64(span) * float64(id-1) / float64(max(p.photos, 1))))
}

func (p *plan) rng(salt uint64, row int64) *rand.Rand {
	return rand.New(rand.NewPCG(p.seed^salt*0x9e3779b97f4a7c15, uint64(row)))
}

// userRow fills users(id, name, display_name, password_hash, created_at).
func (p *plan) userRow(id int64, hash []byte, row []any) {
	r := p.rng(saltUsers, id)
	joined := timelineStart.Add(-30 * 24 * time.Hour)
	if first := p.firstPhoto[id-1]; first > 0 {
		joined = p.photoTime(int64(first)).Add(-time.Duration(r.IntN(90*24)) * time.Hour)
	}
	row[0] = id
	row[1] = userName(id)
	row[2] = displayFirst[r.IntN(len(displayFirst))] + " " + displayLast[r.IntN(len(displayLast))]
	row[3] = hash
	row[4] = joined
}

// userName is user id's log-in name.
func userName(id int64) string { return fmt.Sprintf("user%d", id) }

// owner is the user who uploaded photo id.
func (p *plan) owner(photo int64) int64 { return int64(p.owners[photo-1]) }

// photoRow fills photos(id, user_id, title, description, image_key, width, height, created_at).
func (p *plan) photoRow(id int64, row []any) {
	r := p.rng(saltPhotos, id)
	title := titleAdjectives[r.IntN(len(titleAdjectives))] + " " + titleNouns[r.IntN(len(titleNouns))]
	if r.IntN(3) == 0 {
		title += ", " + p.tags[Pick(r, p.tagCDF)]
	}
	var desc string
	if r.IntN(10) < 7 {
		n := 1 + r.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = descriptionSentences[r.IntN(len(descriptionSentences))]
		}
		desc = strings.Join(parts, " ")
	}
	img := r.IntN(p.images)
	w, h := imageDims(img)
	row[0] = id
	row[1] = p.owner(id)
	row[2] = title
	row[3] = desc
	row[4] = poolKey(p.seed, img)
	row[5] = int32(w)
	row[6] = int32(h)
	row[7] = p.photoTime(id).Add(time.Duration(r.IntN(int(uploadSpread/time.Second))) * time.Second)
}

// photoTags returns the tag indexes of a photo: one to five, popular tags
// far more often, no duplicates.
func (p *plan) photoTags(id int64, out []int) []int {
	r := p.rng(saltTags, id)
	n := 1 + r.IntN(5)
	out = out[:0]
	for len(out) < n {
		t := Pick(r, p.tagCDF)
		dup := false
		for _, have := range out {
			dup = dup || have == t
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out
}

// userFavorites returns the user of activity rank `rank` and the photos they
// favorite: everyone a few, the most active users thousands (a Zipf share of
// the total), hot photos far more often than others.
func (p *plan) userFavorites(rank int, out []int64) (int64, []int64) {
	u := p.userAt(rank)
	r := p.rng(saltFavorites, u)
	n := r.IntN(6)
	share := p.userCDF[rank]
	if rank > 0 {
		share -= p.userCDF[rank-1]
	}
	active := float64(max(p.favorites-5*p.users/2, 0))
	n += int(active*share + r.Float64())
	n = min(n, maxFavoritesPerUser, p.photos/2)
	out = out[:0]
	seen := make(map[int64]bool, n)
	for len(out) < n {
		ph := p.hotPhoto(r)
		if !seen[ph] {
			seen[ph] = true
			out = append(out, ph)
		}
	}
	return u, out
}

const maxFavoritesPerUser = 5000

// tagRow fills tags(id, name, photo_count); counts come from the photo_tags
// of the same database, which are generated first.
func (p *plan) tagRow(id int64, counts []int64, row []any) {
	row[0], row[1], row[2] = id, p.tags[id-1], counts[id-1]
}

// commentRow fills comments(id, photo_id, user_id, body, created_at) and
// returns the photo, whose owner's shard keeps the comment.
func (p *plan) commentRow(id int64, row []any) (photo int64) {
	r := p.rng(saltComments, id)
	photo = p.hotPhoto(r)
	body := commentPhrases[r.IntN(len(commentPhrases))]
	if r.IntN(3) == 0 {
		body += " " + commentPhrases[r.IntN(len(commentPhrases))]
	}
	row[0] = id
	row[1] = photo
	row[2] = p.hotUser(r)
	row[3] = body
	row[4] = p.commentTime(id, photo)
	return photo
}

// commentTime is after the photo's upload (within uploadSpread of photoTime) and
// grows with the comment's id, so a photo's comments, shown in id order, are
// in time order too: the first comments come soon after the upload, the last
// up to 30 days after the timeline's end.
func (p *plan) commentTime(id, photo int64) time.Time {
	after := p.photoTime(photo).Add(uploadSpread)
	horizon := timelineEnd.Add(30 * 24 * time.Hour)
	share := float64(id) / float64(p.comments+1)
	return after.Add(time.Duration(float64(horizon.Sub(after)) * share)).Truncate(time.Second)
}
