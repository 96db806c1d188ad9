package loadtest

import (
	"context"
	"html"
	"net/http"
	"regexp"
)

// Anonymous visitors (--anonymous F): most views of a photo site come from
// people without an account. They read what the logged-in users read, with
// the same weights and the same popularity skew (browse's photo, user and tag
// choices, unchanged), and never sign in or post: no upload form, no
// favorites, no comments, which need an account. On a user's or a tag's page
// they follow "Older photos" now and then, as people page back. Their routes
// carry the prefix "anon-", so that every figure of the report says whose it
// is: anon-photo beside photo.

// olderOneIn is how often an anonymous visitor on a user's or a tag's page
// follows its "Older photos" link: one time in olderOneIn, and again from
// that page with the same chance.
const olderOneIn = 4

// anonymousMix is the browse mix's reads, with their weights.
var anonymousMix = newMix(reads(reader{
	prefix:  "anon-",
	home:    isAnonHome,
	photo:   isAnonPhoto,
	user:    isAnonUser,
	tag:     isAnonTag,
	listing: readPages, // pages back now and then

})...)

// The checks of the anonymous pages: the page, and the "Log in" link that
// only a visitor without a session sees.
var (
	isAnonHome  = statusIs(http.StatusOK, "Recent photos", `href="/login"`)
	isAnonPhoto = statusIs(http.StatusOK, `class="photo"`, `href="/login"`)
	isAnonUser  = statusIs(http.StatusOK, "member since", `href="/login"`)
	isAnonTag   = statusIs(http.StatusOK, "Photos tagged", `href="/login"`)
)

// olderLinkRE is a listing's "Older photos" link (templates/partials/grid.html).
var olderLinkRE = regexp.MustCompile(`<a href="([^"]+\?before=\d+)" rel="next">`)

// readPages reads a user's or a tag's page, then, one time in olderOneIn,
// the older page it links (route "-older"), and so on back.
func readPages(ctx context.Context, vu *vuser, route, path string, ok check) {
	body, err := vu.get(ctx, route, path, ok)
	for err == nil && vu.rng.IntN(olderOneIn) == 0 {
		m := olderLinkRE.FindSubmatch(body)
		if m == nil {
			return
		}
		body, err = vu.get(ctx, route+"-older", html.UnescapeString(string(m[1])), ok)
	}
}
