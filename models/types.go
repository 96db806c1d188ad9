package models

import "time"

// User is a row of users. PasswordHash never leaves the models and auth code.
type User struct {
	ID           int64
	Name         string
	DisplayName  string
	PasswordHash []byte
	CreatedAt    time.Time
}

// PublicUser is what pages show of a user.
type PublicUser struct {
	ID          int64
	Name        string
	DisplayName string
	CreatedAt   time.Time
}

// Photo is a row of photos.
type Photo struct {
	ID          int64
	UserID      int64
	Title       string
	Description string
	ImageKey    string
	Width       int
	Height      int
	CreatedAt   time.Time
	// State is processing, ready or failed at stage 6 (schema 3), where the
	// images are made after the upload; "" (ready) before, where the column
	// does not exist.
	State string
}

// Photo states (stage 6): the images are made after the upload.
const (
	PhotoProcessing = "processing"
	PhotoReady      = "ready"
	PhotoFailed     = "failed"
)

// Ready reports whether a photo's images exist (every photo before stage 6).
func Ready(state string) bool { return state == "" || state == PhotoReady }

// Tag is a row of tags; PhotoCount is maintained by uploads and deletes.
type Tag struct {
	ID         int64
	Name       string
	PhotoCount int64
}

// PhotoCard is one cell of a photo grid.
type PhotoCard struct {
	ID       int64
	Title    string
	ImageKey string
	Width    int
	Height   int
	Owner    string
	State    string // stage 6: see Photo.State
}

// Grid is one page of photos, newest first. Next is the cursor (a photo id)
// for the following page, 0 on the last page: keyset pagination, no OFFSET.
type Grid struct {
	Photos []PhotoCard
	Next   int64
}

// HomePage is the data of GET /.
type HomePage struct {
	Recent      []PhotoCard
	PopularTags []Tag
}

// CommentView is a comment as the photo page shows it.
type CommentView struct {
	ID        int64
	Author    string
	Body      string
	CreatedAt time.Time
}

// PhotoPage is the data of GET /photos/:id (the owner's other photos come from
// the owner's grid, so that one query and one cache entry serve both pages).
type PhotoPage struct {
	Photo     Photo
	Owner     PublicUser
	Tags      []string
	Favorites int64
	Comments  []CommentView
}

// UserPage is the data of GET /users/:name.
type UserPage struct {
	User       PublicUser
	PhotoCount int64
	Grid       Grid
}

// TagPage is the data of GET /tags/:tag.
type TagPage struct {
	Tag  Tag
	Grid Grid
}

// NewPhoto is an upload, already validated and with its files stored.
type NewPhoto struct {
	Owner       PublicUser
	Title       string
	Description string
	Tags        []string
	ImageKey    string
	Width       int
	Height      int
	// State is the photo's first state: empty (ready) when the images are
	// stored with the upload; processing when a worker makes them (stage 6).
	State string
	// JobID names the job that makes the images of a photo in state
	// processing (stage 6, schema 4): recovery re-enqueues a photo whose
	// job is gone.
	JobID string
}

// DeletedPhoto tells the caller what a delete removed: the files to remove and
// (for the cache) whose pages changed.
type DeletedPhoto struct {
	Photo Photo
	Owner string
	Tags  []string
}
