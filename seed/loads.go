package seed

import (
	"context"
	"time"

	"flickrkillr/models"
)

// A share is which rows of the data set one database gets. Before stage 10
// the seed writes them all to one database; stage 10's seed (RunShards)
// writes the same rows spread over the ring and the shards. Every table is
// still generated in full and in the same order: a share only filters it,
// so the union of the shares is the unsharded seed, row for row.
type share struct {
	shards int // 0: not sharded, the whole data set
	shard  int // this shard's number, or ringShard
}

// ringShard is the ring's share: every user and where each user and photo
// lives, none of the content.
const ringShard = -1

func (s share) ring() bool { return s.shards > 0 && s.shard == ringShard }

// holds says whether the share keeps user's own rows (their photos and
// what hangs on them; the favorites they made): all of them when not
// sharded, those of the users the rule places on this shard otherwise.
func (s share) holds(user int64) bool {
	return s.shards == 0 || models.HomeShard(user, s.shards) == s.shard
}

func everyone(int64) bool { return true }

// A load is one table's COPY: its columns, the rows it expects (for the
// progress bar; a shard's share is an estimate) and its rows' generator.
type load struct {
	table string
	cols  []string
	total int64
	src   func(row []any) (bool, error)
}

// loads are the tables a share gets, in the order they are loaded (tags
// after photo_tags, which count each tag's photos).
func (p *plan) loads(s share, hash []byte) []load {
	part := func(n int) int64 { return int64(n / max(s.shards, 1)) }
	users := load{"users", []string{"id", "name", "display_name", "password_hash", "created_at"}, int64(p.users),
		numbered(p.users, func(id int64, row []any) bool { p.userRow(id, hash, row); return true })}
	if s.ring() {
		// Stage 10: the ring keeps the users table as before, and says
		// where each user lives and whose each photo is.
		return []load{users,
			{"ring_users", []string{"user_id", "name", "shard"}, int64(p.users), numbered(p.users, func(id int64, row []any) bool {
				row[0], row[1], row[2] = id, userName(id), int32(models.HomeShard(id, s.shards))
				return true
			})},
			{"ring_photos", []string{"photo_id", "user_id"}, int64(p.photos), numbered(p.photos, func(id int64, row []any) bool {
				row[0], row[1] = id, p.owner(id)
				return true
			})},
		}
	}
	// A photo, its tags, and the comments and favorites on it live on its
	// owner's shard; users are on every shard (pages show other shards'
	// users by name).
	onShard := func(photo int64) bool { return s.holds(p.owner(photo)) }
	counts := make([]int64, len(p.tags)) // this share's photos per tag
	list := []load{users,
		{"photos", []string{"id", "user_id", "title", "description", "image_key", "width", "height", "created_at"}, part(p.photos),
			numbered(p.photos, func(id int64, row []any) bool {
				if !onShard(id) {
					return false
				}
				p.photoRow(id, row)
				return true
			})},
		{"photo_tags", []string{"photo_id", "tag_id"}, part(p.photos) * 3, p.photoTagsSource(onShard, counts)},
		{"tags", []string{"id", "name", "photo_count"}, int64(len(p.tags)),
			numbered(len(p.tags), func(id int64, row []any) bool { p.tagRow(id, counts, row); return true })},
		{"favorites", []string{"user_id", "photo_id", "created_at"}, part(p.favorites), p.favoritesSource(everyone, onShard, false)},
		{"comments", []string{"id", "photo_id", "user_id", "body", "created_at"}, part(p.comments),
			numbered(p.comments, func(id int64, row []any) bool { return onShard(p.commentRow(id, row)) })},
	}
	if s.shards > 0 {
		// Stage 10: a favorite is kept on the faver's shard too ("my favorites").
		list = append(list, load{"user_favorites", []string{"user_id", "photo_id", "owner_id", "created_at"}, part(p.favorites),
			p.favoritesSource(s.holds, everyone, true)})
	}
	return list
}

// numbered feeds the rows 1..n that fill keeps (fill says whether it does):
// the tables whose row number is their id (users, photos, tags, comments).
func numbered(n int, fill func(id int64, row []any) bool) func([]any) (bool, error) {
	id := int64(0)
	return func(row []any) (bool, error) {
		for {
			if id++; id > int64(n) {
				return false, nil
			}
			if fill(id, row) {
				return true, nil
			}
		}
	}
}

// photoTagsSource feeds the photo_tags of the photos keep keeps, counting
// each tag's photos into counts (for tags.photo_count).
func (p *plan) photoTagsSource(keep func(photo int64) bool, counts []int64) func([]any) (bool, error) {
	photo := int64(0)
	var pending []int
	return func(row []any) (bool, error) {
		for len(pending) == 0 {
			if photo++; photo > int64(p.photos) {
				return false, nil
			}
			if !keep(photo) {
				continue
			}
			pending = p.photoTags(photo, pending[:0])
			for _, t := range pending {
				counts[t]++
			}
		}
		row[0] = photo
		row[1] = int64(pending[0] + 1)
		pending = pending[1:]
		return true, nil
	}
}

// favoritesSource feeds favorites(user_id, photo_id, created_at), or with
// owner stage 10's user_favorites(user_id, photo_id, owner_id, created_at):
// the favorites that the users faver keeps made, of the photos photo keeps.
// A user faver does not keep costs nothing: their favorites are not drawn.
func (p *plan) favoritesSource(faver, photo func(int64) bool, owner bool) func([]any) (bool, error) {
	rank := -1
	var user int64
	var pending []int64
	return func(row []any) (bool, error) {
		for {
			for len(pending) == 0 {
				if rank++; rank >= p.users {
					return false, nil
				}
				if faver(p.userAt(rank)) {
					user, pending = p.userFavorites(rank, pending[:0])
				}
			}
			ph := pending[0]
			pending = pending[1:]
			if !photo(ph) {
				continue
			}
			at := p.photoTime(ph).Add(time.Duration(1+ph%(60*24)) * time.Hour)
			if owner {
				row[0], row[1], row[2], row[3] = user, ph, p.owner(ph), at
			} else {
				row[0], row[1], row[2] = user, ph, at
			}
			return true, nil
		}
	}
}

// rowSource feeds pgx's COPY from a generator, counting rows for the
// progress bar and stopping when the context ends (Ctrl-C).
type rowSource struct {
	ctx   context.Context
	row   []any
	next  func(row []any) (bool, error)
	count *counter
	err   error
}

func (s *rowSource) Next() bool {
	if s.err != nil {
		return false
	}
	if s.count.Load()&0xffff == 0 {
		if err := s.ctx.Err(); err != nil {
			s.err = err
			return false
		}
	}
	ok, err := s.next(s.row)
	if err != nil {
		s.err = err
		return false
	}
	if ok {
		s.count.Add(1)
	}
	return ok
}

func (s *rowSource) Values() ([]any, error) { return s.row, nil }
func (s *rowSource) Err() error             { return s.err }
