package app

import (
	"errors"
	"net/http"

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
	if !f.validate() {
		return a.render(c, http.StatusUnprocessableEntity, "signup", "Sign up", f)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(f.Password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	u, err := a.users.Create(c.Request().Context(), f.Name, f.DisplayName, hash)
	if errors.Is(err, models.ErrDuplicate) {
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

func (a *App) loginPost(c echo.Context) error {
	f := &loginForm{Name: c.FormValue("name"), Password: c.FormValue("password")}
	if !f.validate() {
		return a.render(c, http.StatusUnprocessableEntity, "login", "Log in", f)
	}
	u, err := a.users.ByName(c.Request().Context(), f.Name)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, models.ErrNotFound):
		hash = dummyHash
	case err != nil:
		return err
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(f.Password)) != nil || err != nil {
		f.Errors.add("Password", "That user name and password do not match.")
		return a.render(c, http.StatusUnprocessableEntity, "login", "Log in", f)
	}
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
