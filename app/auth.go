package app

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"flickrkillr/models"
)

// dummyHash is compared against when a user name does not exist, so that a
// wrong name takes as long as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a real password"), bcrypt.DefaultCost)

func (a *App) signup(c echo.Context) error {
	return a.render(c, http.StatusOK, "signup", "Sign up", &signupForm{})
}

func (a *App) signupPost(c echo.Context) error {
	f := &signupForm{Name: c.FormValue("name"), DisplayName: c.FormValue("display_name"), Password: c.FormValue("password")}
	valid := f.validate()
	if err := a.throttled(c, "signup", f.Name); err != nil {
		return err
	}
	if !valid {
		a.failed(c, "signup", f.Name)
		return a.render(c, http.StatusUnprocessableEntity, "signup", "Sign up", f)
	}
	hash, err := a.hashPassword(c, f.Password)
	if err != nil {
		return err
	}
	u, err := a.users.Create(c.Request().Context(), f.Name, f.DisplayName, hash)
	if errors.Is(err, models.ErrDuplicate) {
		a.failed(c, "signup", f.Name)
		f.Errors.add("Name", "That name is taken; pick another.")
		return a.render(c, http.StatusUnprocessableEntity, "signup", "Sign up", f)
	}
	if err != nil {
		return err
	}
	if err := a.startSession(c, u); err != nil {
		return err
	}
	return a.redirect(c, "/users/"+u.Name, "Welcome to FlickrKillr, "+u.DisplayName+"!")
}

func (a *App) login(c echo.Context) error {
	return a.render(c, http.StatusOK, "login", "Log in", &loginForm{})
}

// loginPost checks a name and password. Failures are counted per account
// and per client address (guard.Throttle): past the limit the form answers 429
// before any bcrypt work, even for the right password.
func (a *App) loginPost(c echo.Context) error {
	f := &loginForm{Name: c.FormValue("name"), Password: c.FormValue("password")}
	if !f.validate() {
		return a.render(c, http.StatusUnprocessableEntity, "login", "Log in", f)
	}
	if err := a.throttled(c, "login", f.Name); err != nil {
		return err
	}
	// The gate is taken before the user lookup, so that a refused log-in
	// costs neither bcrypt nor a database connection.
	release, ok := a.lim.bcrypt.Enter(c.Request().Context())
	if !ok {
		return shedSignIn(c)
	}
	defer release()
	u, err := a.users.ByName(c.Request().Context(), f.Name)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, models.ErrNotFound):
		hash = dummyHash
	case err != nil:
		return err
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(f.Password)) == nil
	if !match || err != nil {
		a.failed(c, "login", f.Name)
		f.Errors.add("Password", "That user name and password do not match.")
		return a.render(c, http.StatusUnprocessableEntity, "login", "Log in", f)
	}
	a.lim.names.Reset(nameKey("login", f.Name))
	if err := a.startSession(c, u); err != nil {
		return err
	}
	return a.redirect(c, "/", "Welcome back, "+u.DisplayName+".")
}

func (a *App) logoutPost(c echo.Context) error {
	if err := a.endSession(c); err != nil {
		return err
	}
	return a.redirect(c, "/", "You are logged out.")
}

// throttled answers 429 with Retry-After when the account name or the
// client address has failed too often at action ("login", "signup"). The
// address is the TCP peer's (echo's ExtractIPDirect, set in routes.go):
// X-Forwarded-For is not trusted, or every request could claim a new one.
func (a *App) throttled(c echo.Context, action, name string) error {
	wait, blocked := a.lim.names.Blocked(nameKey(action, name))
	if w, b := a.lim.addrs.Blocked(action + ":" + c.RealIP()); b {
		wait, blocked = max(wait, w), true
	}
	if !blocked {
		return nil
	}
	minutes := int(wait.Minutes()) + 1
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	return echo.NewHTTPError(http.StatusTooManyRequests,
		fmt.Sprintf("Too many failed attempts. Please wait %d minutes and try again.", minutes))
}

// nameKey is the throttle key of an account name at action. A name too long
// to be an account (a sign-up may send 64 KiB of one) is kept as its hash:
// a throttle holds small keys, in memory, in Redis or in a database index.
func nameKey(action, name string) string {
	if len(name) > maxKeyName {
		sum := sha256.Sum256([]byte(name))
		name = "#" + hex.EncodeToString(sum[:16])
	}
	return action + ":" + name
}

// maxKeyName is longer than any valid account name (30 bytes).
const maxKeyName = 64

// failed counts a failure of action for the account name and the address.
func (a *App) failed(c echo.Context, action, name string) {
	if name != "" {
		a.lim.names.Fail(nameKey(action, name))
	}
	a.lim.addrs.Fail(action + ":" + c.RealIP())
}

const busyMessage = "We are busy signing people in. Please try again in a moment."

// shedHeader marks the sign-in gate's 503 (X-Shed: sign-in): work refused
// on purpose, with Retry-After, not a failure. The load tool counts these
// apart from errors by it, and the error handler does not log them as errors.
const shedHeader = "X-Shed"

// shedSignIn is the sign-in gate's 503: come back in a second.
func shedSignIn(c echo.Context) error {
	c.Response().Header().Set(shedHeader, "sign-in")
	return unavailable(c, 1, busyMessage, nil)
}

// hashPassword runs bcrypt inside the gate; a full gate is a quick 503.
func (a *App) hashPassword(c echo.Context, password string) ([]byte, error) {
	release, ok := a.lim.bcrypt.Enter(c.Request().Context())
	if !ok {
		return nil, shedSignIn(c)
	}
	defer release()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("app: hash password: %w", err)
	}
	return hash, nil
}
