package app

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Forms are their own structs, filled field by field from the request and
// never bound into models (no mass assignment). Each validate fills Errors,
// keyed by field, with messages meant for the user.

// FieldErrors maps a form field to what is wrong with it.
type FieldErrors map[string]string

func (e FieldErrors) add(field, msg string) {
	if _, seen := e[field]; !seen {
		e[field] = msg
	}
}

var userNameRE = regexp.MustCompile(`^[a-z0-9_]{3,30}$`)

// bcrypt reads at most 72 bytes: a longer password is refused rather than
// silently cut.
const maxPasswordBytes = 72

type signupForm struct {
	Name        string
	DisplayName string
	Password    string
	Errors      FieldErrors
}

func (f *signupForm) validate() bool {
	f.Errors = FieldErrors{}
	f.Name = strings.ToLower(strings.TrimSpace(f.Name))
	f.DisplayName = strings.TrimSpace(f.DisplayName)
	if !userNameRE.MatchString(f.Name) {
		f.Errors.add("Name", "Use 3 to 30 characters: lower-case letters, digits and _.")
	}
	if f.DisplayName == "" {
		f.DisplayName = f.Name
	}
	if msg := nameProblem(f.DisplayName); msg != "" {
		f.Errors.add("DisplayName", msg)
	}
	if utf8.RuneCountInString(f.DisplayName) > 60 {
		f.Errors.add("DisplayName", "Use at most 60 characters.")
	}
	switch {
	case textProblem(f.Password, false) != "":
		f.Errors.add("Password", textProblem(f.Password, false))
	case utf8.RuneCountInString(f.Password) < 8:
		f.Errors.add("Password", "Use at least 8 characters.")
	case len(f.Password) > maxPasswordBytes:
		f.Errors.add("Password", "Use at most 72 bytes (passwords longer than that are not supported).")
	}
	return len(f.Errors) == 0
}

type loginForm struct {
	Name     string
	Password string
	Errors   FieldErrors
}

func (f *loginForm) validate() bool {
	f.Errors = FieldErrors{}
	// Checked before ToLower, which would turn invalid bytes into U+FFFD.
	if msg := textProblem(f.Name, false); msg != "" {
		f.Errors.add("Name", msg)
	}
	f.Name = strings.ToLower(strings.TrimSpace(f.Name))
	if f.Name == "" {
		f.Errors.add("Name", "Enter your user name.")
	}
	switch {
	case f.Password == "":
		f.Errors.add("Password", "Enter your password.")
	case len(f.Password) > maxPasswordBytes:
		f.Errors.add("Password", "Passwords are at most 72 bytes.")
	}
	return len(f.Errors) == 0
}

// Limits on what a photo's text may hold.
const (
	maxTitle       = 200
	maxDescription = 5000
	maxTags        = 20
	maxTagLen      = 32
	maxComment     = 2000
)

type uploadForm struct {
	Title       string
	Description string
	TagsText    string
	Tags        []string
	Errors      FieldErrors
}

func (f *uploadForm) validate() bool {
	f.Errors = FieldErrors{}
	f.Title = strings.TrimSpace(f.Title)
	f.Description = strings.TrimSpace(f.Description)
	if msg := textProblem(f.Title, false); msg != "" {
		f.Errors.add("Title", msg)
	}
	if msg := textProblem(f.Description, true); msg != "" {
		f.Errors.add("Description", msg)
	}
	switch n := utf8.RuneCountInString(f.Title); {
	case n == 0:
		f.Errors.add("Title", "Give the photo a title.")
	case n > maxTitle:
		f.Errors.add("Title", "Use at most 200 characters.")
	}
	if utf8.RuneCountInString(f.Description) > maxDescription {
		f.Errors.add("Description", "Use at most 5000 characters.")
	}
	tags, msg := parseTags(f.TagsText)
	if msg != "" {
		f.Errors.add("Tags", msg)
	}
	f.Tags = tags
	return len(f.Errors) == 0
}

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// parseTags splits "Beach, sunset  dog" into lower-case, de-duplicated tags.
func parseTags(text string) ([]string, string) {
	fields := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	seen := map[string]bool{}
	var tags []string
	for _, t := range fields {
		t = strings.TrimPrefix(t, "#")
		if t == "" || seen[t] {
			continue
		}
		if len(t) > maxTagLen || !tagRE.MatchString(t) {
			return nil, "Tags use letters, digits and -, at most 32 characters each."
		}
		seen[t] = true
		tags = append(tags, t)
	}
	if len(tags) > maxTags {
		return nil, "Use at most 20 tags."
	}
	return tags, ""
}

type commentForm struct {
	Body   string
	Errors FieldErrors
}

func (f *commentForm) validate() bool {
	f.Errors = FieldErrors{}
	f.Body = strings.TrimSpace(f.Body)
	if msg := textProblem(f.Body, true); msg != "" {
		f.Errors.add("Body", msg)
	}
	switch n := utf8.RuneCountInString(f.Body); {
	case n == 0:
		f.Errors.add("Body", "Write something first.")
	case n > maxComment:
		f.Errors.add("Body", "Use at most 2000 characters.")
	}
	return len(f.Errors) == 0
}

// textProblem says what is wrong with text from a form or a URL, or "" when
// nothing is: it must be valid UTF-8 without NUL or other control characters
// (PostgreSQL refuses NUL and invalid UTF-8 with an error, and control
// characters have no business in a title or a name). Multi-line fields may
// hold newlines and tabs. The message is written for the user.
func textProblem(s string, multiline bool) string {
	if !utf8.ValidString(s) {
		return "Use only valid UTF-8 text."
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if r == 0 || unicode.IsControl(r) {
			return "Remove the control characters (such as NUL) from this field."
		}
	}
	return ""
}

// nameProblem is textProblem for a name shown next to other people's content
// (a display name): it also refuses the invisible characters that make one
// name look like another or reverse the text around it, namely bidirectional
// overrides and isolates (U+202A–U+202E, U+2066–U+2069), zero-width
// characters (U+200B–U+200F, U+2060, U+FEFF) and other format characters.
func nameProblem(s string) string {
	if msg := textProblem(s, false); msg != "" {
		return msg
	}
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) || r == '\u200b' || r == '\u2060' || r == '\ufeff' {
			return "Remove the invisible characters (direction overrides, zero-width spaces) from the name."
		}
	}
	return ""
}
