package apierr_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/common"

	"github.com/sluice-gateway/sluice"
	sapierr "github.com/sluice-gateway/sluice/apierr"
)

func TestDatabricksCode(t *testing.T) {
	for _, tc := range []struct {
		e    sapierr.Error
		want string
	}{
		{sapierr.Error{Status: 400, Param: "name"}, "INVALID_PARAMETER_VALUE"},
		{sapierr.Error{Status: 400}, "BAD_REQUEST"},
		{sapierr.Error{Status: 400, Code: "invalid_json"}, "BAD_REQUEST"},
		{sapierr.Error{Status: 401, Code: "invalid_api_key"}, "UNAUTHENTICATED"},
		{sapierr.Error{Status: 403}, "PERMISSION_DENIED"},
		{sapierr.Error{Status: 404, Code: "model_not_found"}, "RESOURCE_DOES_NOT_EXIST"},
		{sapierr.Error{Status: 409}, "RESOURCE_ALREADY_EXISTS"},
		{sapierr.Error{Status: 409, Code: "ABORTED"}, "ABORTED"},
		{sapierr.Error{Status: 413}, "BAD_REQUEST"},
		{sapierr.Error{Status: 429, Class: sluice.ErrClassRateLimited}, "REQUEST_LIMIT_EXCEEDED"},
		{sapierr.Error{Status: 429, Class: sluice.ErrClassBudgetExceeded}, "RESOURCE_EXHAUSTED"},
		{sapierr.Error{Status: 499}, "CANCELLED"},
		{sapierr.Error{Status: 500}, "INTERNAL_ERROR"},
		{sapierr.Error{Status: 501}, "NOT_IMPLEMENTED"},
		{sapierr.Error{Status: 502}, "TEMPORARILY_UNAVAILABLE"},
		{sapierr.Error{Status: 503}, "TEMPORARILY_UNAVAILABLE"},
		{sapierr.Error{Status: 504}, "DEADLINE_EXCEEDED"},
		{sapierr.Error{Status: 422}, "BAD_REQUEST"},
		{sapierr.Error{Status: 507}, "INTERNAL_ERROR"},
		{sapierr.Error{Status: 400, Code: "INVALID_STATE"}, "INVALID_STATE"},
	} {
		if got := sapierr.DatabricksCode(&tc.e); got != tc.want {
			t.Errorf("status %d code %q class %q: got %s, want %s", tc.e.Status, tc.e.Code, tc.e.Class, got, tc.want)
		}
	}
}

func TestWriteDatabricks(t *testing.T) {
	rec := httptest.NewRecorder()
	e := &sapierr.Error{Status: 429, Code: "rate_limit_exceeded", Msg: "slow down", Class: sluice.ErrClassRateLimited,
		RetryAfter: 1500 * time.Millisecond, Header: http.Header{"X-Ratelimit-Remaining-Requests": {"0"}},
		Err: errors.New("secret internal detail")}
	sapierr.WriteDatabricks(rec, e)
	if rec.Code != 429 {
		t.Fatalf("status %d", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2", got)
	}
	if got := rec.Header().Get("X-Ratelimit-Remaining-Requests"); got != "0" {
		t.Errorf("extra header %q", got)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || body["error_code"] != "REQUEST_LIMIT_EXCEEDED" || body["message"] != "slow down" {
		t.Errorf("body %s", rec.Body)
	}
}

// The SDK's own parser reads what WriteDatabricks writes, and its sentinel
// errors match.
func TestWriteDatabricksSDKParses(t *testing.T) {
	for _, tc := range []struct {
		e    *sapierr.Error
		want error
	}{
		{sapierr.NotFound("name", "", "Endpoint 'x' does not exist."), apierr.ErrResourceDoesNotExist},
		{sapierr.BadRequest("name", "", "bad name"), apierr.ErrInvalidParameterValue},
		{sapierr.Unauthorized(), apierr.ErrUnauthenticated},
		{sapierr.Forbidden("", "no"), apierr.ErrPermissionDenied},
		{&sapierr.Error{Status: 409, Msg: "taken"}, apierr.ErrResourceAlreadyExists},
		{&sapierr.Error{Status: 429, Msg: "slow", Class: sluice.ErrClassRateLimited}, apierr.ErrRequestLimitExceeded},
		{&sapierr.Error{Status: 429, Msg: "broke", Class: sluice.ErrClassBudgetExceeded}, apierr.ErrResourceExhausted},
		{&sapierr.Error{Status: 500, Msg: "oops"}, apierr.ErrInternalError},
		{&sapierr.Error{Status: 503, Msg: "later"}, apierr.ErrTemporarilyUnavailable},
		{&sapierr.Error{Status: 504, Msg: "late"}, apierr.ErrDeadlineExceeded},
	} {
		rec := httptest.NewRecorder()
		sapierr.WriteDatabricks(rec, tc.e)
		resp := rec.Result()
		resp.Request = httptest.NewRequest("GET", "http://127.0.0.1/api/2.0/serving-endpoints/x", nil)
		err := apierr.GetAPIError(context.Background(), common.ResponseWrapper{Response: resp, ReadCloser: io.NopCloser(resp.Body)})
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d: SDK error %v does not match %v", tc.e.Status, err, tc.want)
		}
		var api *apierr.APIError
		if !errors.As(err, &api) || api.Message != tc.e.Msg {
			t.Errorf("status %d: SDK message %v, want %q", tc.e.Status, err, tc.e.Msg)
		}
	}
}
