package apierr

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/sluice-gateway/sluice"
)

// Databricks error codes Sluice answers with. The SDK (databricks-sdk-go
// apierr) maps each to a sentinel, so clients can test
// errors.Is(err, databricks.ErrResourceDoesNotExist) and the like.
const (
	DBInvalidParameterValue  = "INVALID_PARAMETER_VALUE"
	DBBadRequest             = "BAD_REQUEST"
	DBUnauthenticated        = "UNAUTHENTICATED"
	DBPermissionDenied       = "PERMISSION_DENIED"
	DBResourceDoesNotExist   = "RESOURCE_DOES_NOT_EXIST"
	DBResourceAlreadyExists  = "RESOURCE_ALREADY_EXISTS"
	DBAborted                = "ABORTED"
	DBRequestLimitExceeded   = "REQUEST_LIMIT_EXCEEDED"
	DBResourceExhausted      = "RESOURCE_EXHAUSTED"
	DBCancelled              = "CANCELLED"
	DBInternalError          = "INTERNAL_ERROR"
	DBNotImplemented         = "NOT_IMPLEMENTED"
	DBTemporarilyUnavailable = "TEMPORARILY_UNAVAILABLE"
	DBDeadlineExceeded       = "DEADLINE_EXCEEDED"
)

// DatabricksCode returns the Databricks error_code for e. A Code that is
// already a Databricks code (upper case letters and underscores) is kept;
// otherwise the code follows from the status and class:
//
//	400 INVALID_PARAMETER_VALUE when a Param is named, else BAD_REQUEST
//	401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 RESOURCE_DOES_NOT_EXIST,
//	409 RESOURCE_ALREADY_EXISTS
//	413 BAD_REQUEST (not REQUEST_LIMIT_EXCEEDED: the SDK retries that one,
//	    and a body that is too large stays too large)
//	429 RESOURCE_EXHAUSTED for an exhausted budget, else REQUEST_LIMIT_EXCEEDED
//	499 CANCELLED, 500 INTERNAL_ERROR, 501 NOT_IMPLEMENTED,
//	502 and 503 TEMPORARILY_UNAVAILABLE, 504 DEADLINE_EXCEEDED
//	any other 4xx BAD_REQUEST, any other 5xx INTERNAL_ERROR
func DatabricksCode(e *Error) string {
	if isDatabricksCode(e.Code) {
		return e.Code
	}
	switch e.Status {
	case 400:
		if e.Param != "" {
			return DBInvalidParameterValue
		}
		return DBBadRequest
	case 401:
		return DBUnauthenticated
	case 403:
		return DBPermissionDenied
	case 404:
		return DBResourceDoesNotExist
	case 409:
		return DBResourceAlreadyExists
	case 429:
		if e.Class == sluice.ErrClassBudgetExceeded {
			return DBResourceExhausted
		}
		return DBRequestLimitExceeded
	case 499:
		return DBCancelled
	case 501:
		return DBNotImplemented
	case 502, 503:
		return DBTemporarilyUnavailable
	case 504:
		return DBDeadlineExceeded
	}
	if e.Status >= 400 && e.Status < 500 {
		return DBBadRequest
	}
	return DBInternalError
}

func isDatabricksCode(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'A' || c > 'Z') && c != '_' {
			return false
		}
	}
	return true
}

type databricksBody struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

// DatabricksBody returns e in Databricks' error shape,
// {"error_code":"…","message":"…"}.
func DatabricksBody(e *Error) []byte {
	out, _ := json.Marshal(databricksBody{ErrorCode: DatabricksCode(e), Message: e.Msg})
	return out
}

// WriteDatabricks renders e in Databricks' error shape, with the same
// Retry-After and extra headers as WriteOpenAI.
func WriteDatabricks(w http.ResponseWriter, e *Error) {
	writeHeaders(w, e)
	body := DatabricksBody(e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
}
