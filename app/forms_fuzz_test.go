package app

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The fuzz targets hold the forms to one promise: whatever bytes arrive,
// validate never panics, and what it accepts is text PostgreSQL stores and a
// page shows safely (valid UTF-8, no NUL or control characters, display
// names without invisible format characters). A short run is part of CI
// (scripts/test.sh); the seed corpus is under testdata/fuzz.

func storable(t *testing.T, field, s string, multiline bool) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("%s accepted with invalid UTF-8: %q", field, s)
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if r == 0 || unicode.IsControl(r) {
			t.Fatalf("%s accepted with a control character %U: %q", field, r, s)
		}
	}
}

func FuzzSignupForm(f *testing.F) {
	f.Add("alice", "Alice", "correct horse battery")
	f.Add("bob_2", "Bob \u202Egnp.exe", "password")
	f.Add("x\x00y", "\xff\xfe", "\x00\x00\x00\x00\x00\x00\x00\x00")
	f.Add("carol", "Ca\u200Brol", strings.Repeat("é", 40))
	f.Fuzz(func(t *testing.T, name, display, password string) {
		form := &signupForm{Name: name, DisplayName: display, Password: password}
		if !form.validate() {
			if len(form.Errors) == 0 {
				t.Fatal("refused without a message")
			}
			return
		}
		storable(t, "name", form.Name, false)
		storable(t, "display name", form.DisplayName, false)
		storable(t, "password", form.Password, false)
		if !userNameRE.MatchString(form.Name) {
			t.Fatalf("name %q accepted", form.Name)
		}
		for _, r := range form.DisplayName {
			if unicode.Is(unicode.Cf, r) {
				t.Fatalf("display name accepted with format character %U", r)
			}
		}
		if len(form.Password) > maxPasswordBytes || utf8.RuneCountInString(form.DisplayName) > 60 {
			t.Fatal("over-long field accepted")
		}
	})
}

func FuzzLoginForm(f *testing.F) {
	f.Add("alice", "correct horse battery")
	f.Add("Al\x00ice", "pw")
	f.Add("\xc3\x28", "")
	f.Fuzz(func(t *testing.T, name, password string) {
		form := &loginForm{Name: name, Password: password}
		if !form.validate() {
			if len(form.Errors) == 0 {
				t.Fatal("refused without a message")
			}
			return
		}
		storable(t, "name", form.Name, false)
		if len(form.Password) > maxPasswordBytes {
			t.Fatal("over-long password accepted")
		}
	})
}

func FuzzUploadForm(f *testing.F) {
	f.Add("Harbor at dusk", "Boats.\n\nAnd gulls.", "Sea, harbor dusk")
	f.Add("a\x00b", "\x1b[31m", "#tag,#TAG,,x\x00")
	f.Add(strings.Repeat("t", 201), "", strings.Repeat("a ", 30))
	f.Fuzz(func(t *testing.T, title, description, tags string) {
		form := &uploadForm{Title: title, Description: description, TagsText: tags}
		if !form.validate() {
			if len(form.Errors) == 0 {
				t.Fatal("refused without a message")
			}
			return
		}
		storable(t, "title", form.Title, false)
		storable(t, "description", form.Description, true)
		if len(form.Tags) > maxTags {
			t.Fatalf("%d tags accepted", len(form.Tags))
		}
		for _, tag := range form.Tags {
			if !tagRE.MatchString(tag) || len(tag) > maxTagLen {
				t.Fatalf("tag %q accepted", tag)
			}
		}
	})
}

func FuzzCommentForm(f *testing.F) {
	f.Add("Lovely light <b>here</b>")
	f.Add("one\n\ttwo\r\n")
	f.Add("nul\x00 and \xff")
	f.Fuzz(func(t *testing.T, body string) {
		form := &commentForm{Body: body}
		if !form.validate() {
			if len(form.Errors) == 0 {
				t.Fatal("refused without a message")
			}
			return
		}
		storable(t, "comment", form.Body, true)
		if utf8.RuneCountInString(form.Body) > maxComment {
			t.Fatal("over-long comment accepted")
		}
	})
}
