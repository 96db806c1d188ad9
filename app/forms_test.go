package app

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTags(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{"commas and spaces, lower-cased", "Beach, sunset  DOG", []string{"beach", "sunset", "dog"}, false},
		{"duplicates and hashes dropped", "#cat cat, #cat", []string{"cat"}, false},
		{"empty", "  , ,", nil, false},
		{"a slash", "a/b", nil, true},
		{"too long", strings.Repeat("x", 33), nil, true},
		{"21 tags are too many", "a b c d e f g h i j k l m n o p q r s t u", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := parseTags(tt.in)
			if (msg != "") != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("parseTags(%q) = %v, %q", tt.in, got, msg)
			}
		})
	}
}

func TestSignupFormValidate(t *testing.T) {
	tests := []struct {
		name   string
		form   signupForm
		fields []string
	}{
		{"valid, display name defaults to the name", signupForm{Name: " Zoe_1 ", Password: "12345678"}, nil},
		{"short name", signupForm{Name: "zo", Password: "12345678"}, []string{"Name"}},
		{"password 72 bytes is fine", signupForm{Name: "zoe", Password: strings.Repeat("a", 72)}, nil},
		{"password 73 bytes is refused", signupForm{Name: "zoe", Password: strings.Repeat("a", 73)}, []string{"Password"}},
		{"long display name", signupForm{Name: "zoe", DisplayName: strings.Repeat("é", 61), Password: "12345678"}, []string{"DisplayName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.form
			ok := f.validate()
			if ok != (len(tt.fields) == 0) {
				t.Fatalf("validate = %v, errors %v", ok, f.Errors)
			}
			for _, field := range tt.fields {
				if f.Errors[field] == "" {
					t.Fatalf("no error on %s: %v", field, f.Errors)
				}
			}
			if ok && (f.Name != strings.ToLower(strings.TrimSpace(tt.form.Name)) || f.DisplayName == "") {
				t.Fatalf("normalised to %+v", f)
			}
		})
	}
}

func TestUploadAndCommentFormsValidate(t *testing.T) {
	u := uploadForm{Title: strings.Repeat("t", 201)}
	if u.validate() || u.Errors["Title"] == "" {
		t.Fatalf("a 201-character title passed: %v", u.Errors)
	}
	c := commentForm{Body: "   "}
	if c.validate() || c.Errors["Body"] == "" {
		t.Fatal("a blank comment passed")
	}
	c = commentForm{Body: " hi "}
	if !c.validate() || c.Body != "hi" {
		t.Fatalf("comment %q: %v", c.Body, c.Errors)
	}
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	ok := Config{DatabaseURL: "postgres://x@y/z", DataDir: "d", Addr: "127.0.0.1:8080", Stage: DefaultStage()}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no database", func(c *Config) { c.DatabaseURL = "" }, "DATABASE_URL"},
		{"mysql url", func(c *Config) { c.DatabaseURL = "mysql://x" }, "DATABASE_URL"},
		{"bad redis", func(c *Config) { c.RedisURL = "http://x" }, "REDIS_URL"},
		{"bad addr", func(c *Config) { c.Addr = "8080" }, "ADDR"},
		{"unknown stage", func(c *Config) { c.Stage = 42 }, "STAGE"},
	}
	all := []string{"db", "redis", "data", "addr", "stage"}
	if err := ok.Validate(all...); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate(all...)
			if !IsConfigError(err) || !strings.HasPrefix(err.Error(), tt.want+":") {
				t.Fatalf("Validate: %v, want a ConfigError naming %s", err, tt.want)
			}
		})
	}
}
