package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/jumpgate/jumpgate/ca"
	"github.com/jumpgate/jumpgate/identity"
	"github.com/jumpgate/jumpgate/storage"
)

// Error is an API error: the status, the sentence the client sees, and the
// cause that is logged (never sent).
type Error struct {
	Status  int
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func apiErr(status int, msg string, cause error) *Error {
	return &Error{Status: status, Message: msg, Cause: cause}
}

// classify maps package errors onto API errors.
func classify(err error) *Error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, identity.ErrUnavailable):
		return apiErr(http.StatusServiceUnavailable, "the identity provider cannot be reached; try again shortly", err)
	case errors.Is(err, identity.ErrLedger):
		return apiErr(http.StatusServiceUnavailable, "the certificate authority cannot record the token's use right now; try again shortly", err)
	case errors.Is(err, identity.ErrReplay):
		return apiErr(http.StatusUnauthorized, "this ID token was already used; log in again", err)
	case errors.Is(err, identity.ErrInvalidToken):
		return apiErr(http.StatusUnauthorized, "invalid ID token", err)
	case errors.Is(err, ca.ErrKeyRejected):
		return apiErr(http.StatusBadRequest, publicMessage(err), err)
	case errors.Is(err, ca.ErrInvalidRequest):
		return apiErr(http.StatusBadRequest, publicMessage(err), err)
	case errors.Is(err, storage.ErrNotFound):
		return apiErr(http.StatusNotFound, "not found", err)
	case errors.Is(err, storage.ErrConflict):
		return apiErr(http.StatusConflict, "conflict", err)
	default:
		return apiErr(http.StatusInternalServerError, "internal error", err)
	}
}

// publicMessage is the error text for errors known to carry no secrets.
func publicMessage(err error) string { return err.Error() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, map[string]string{"error": e.Message})
}
