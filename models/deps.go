package models

import "strconv"

// A dependency names a piece of data that a page (or a part of one) shows:
// a photo, a user's photos, a tag's photos, the home page. Writes change
// dependencies; a cache (stage 3) keeps what it stored under the current
// version of each dependency, so that a write makes the next read fresh.
// Stages without a cache ignore them.

// DepPhoto is one photo: its page, favorites and comments.
func DepPhoto(id int64) string { return "photo:" + strconv.FormatInt(id, 10) }

// DepUser is a user's photos (their page, and "more from" on their photos).
func DepUser(name string) string { return "user:" + name }

// DepTag is a tag's photos and count.
func DepTag(name string) string { return "tag:" + name }

// DepHome is the home page: the newest photos and the popular tags.
const DepHome = "home"

// ListingDeps are the lists a photo appears in, which adding, removing or
// finishing it changes besides the photo itself: the home page, its owner's
// pages and each of its tags' pages.
func ListingDeps(owner string, tags []string) []string {
	deps := []string{DepHome, DepUser(owner)}
	for _, t := range tags {
		deps = append(deps, DepTag(t))
	}
	return deps
}
