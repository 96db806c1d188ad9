package app

import (
	"unicode"
	"unicode/utf8"
)

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
