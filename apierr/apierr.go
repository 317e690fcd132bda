// Package apierr is the one error type Sluice's handlers return and the one
// place that renders it in the caller's API dialect. What the client sees
// (Status, Msg) is kept apart from what is logged (Err), so upstream URLs,
// credentials and matched content never reach a response.
package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Error is an error with a client-facing rendering.
type Error struct {
	Status     int           // HTTP status
	Type       string        // OpenAI error type, e.g. invalid_request_error
	Code       string        // OpenAI error code, e.g. model_not_found
	Param      string        // offending request field, if any
	Msg        string        // safe to show the client
	Class      string        // sluice.ErrClass* recorded in the ledger
	RetryAfter time.Duration // sets Retry-After when > 0
	Header     http.Header   // extra response headers
	Err        error         // internal cause, logged, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// As returns err as an *Error, wrapping anything else as a 500.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: 500, Type: "server_error", Msg: "internal error", Class: sluice.ErrClassInternal, Err: err}
}

// BadRequest is a 400 for a field of the request.
func BadRequest(param, code, format string, a ...any) *Error {
	return &Error{Status: 400, Type: "invalid_request_error", Code: code, Param: param,
		Msg: fmt.Sprintf(format, a...), Class: sluice.ErrClassInvalidRequest}
}

// Unauthorized is the single answer to every unusable key.
func Unauthorized() *Error {
	return &Error{Status: 401, Type: "invalid_request_error", Code: "invalid_api_key",
		Msg:   "Incorrect or missing API key. Pass a Sluice key as 'Authorization: Bearer sk-sluice-...' or in the 'api-key' header.",
		Class: sluice.ErrClassAuthentication}
}

// Forbidden is a 403.
func Forbidden(code, format string, a ...any) *Error {
	return &Error{Status: 403, Type: "permission_error", Code: code, Msg: fmt.Sprintf(format, a...), Class: sluice.ErrClassPermission}
}

// NotFound is a 404.
func NotFound(param, code, format string, a ...any) *Error {
	return &Error{Status: 404, Type: "invalid_request_error", Code: code, Param: param,
		Msg: fmt.Sprintf(format, a...), Class: sluice.ErrClassNotFound}
}

type openAIBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// OpenAIBody returns e in OpenAI's error shape.
func OpenAIBody(e *Error) []byte {
	b := openAIBody{Error: openAIError{Message: e.Msg, Type: e.Type}}
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	out, _ := json.Marshal(b)
	return out
}

// WriteOpenAI renders e in OpenAI's error shape.
func WriteOpenAI(w http.ResponseWriter, e *Error) {
	writeHeaders(w, e)
	body := OpenAIBody(e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
}

func writeHeaders(w http.ResponseWriter, e *Error) {
	h := w.Header()
	for k, v := range e.Header {
		h[k] = v
	}
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
}
