// Package templates embeds the HTML templates (a layout, partials, one file
// per page) and the static assets, so the binary needs no files beside it.
package templates

import "embed"

// Files holds layout.html, partials/*.html and pages/*.html.
//
//go:embed layout.html partials/*.html pages/*.html
var Files embed.FS

// Static holds static/ (the stylesheet), served under /static/.
//
//go:embed static
var Static embed.FS
