package main

import (
	"context"
	"encoding/json"
	"github.com/shopspring/decimal"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/metering"
)

type noKeys struct{}

func (noKeys) KeyByHash(context.Context, string) (gateway.Key, error) {
	return gateway.Key{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such key")
}
func (noKeys) KeysChangedSince(context.Context, time.Time) ([]string, error) { return nil, nil }

type noRoutes struct{}

func (noRoutes) Route(context.Context, string, string, int) (catalog.Route, error) {
	return catalog.Route{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such function")
}
func (noRoutes) FunctionsChangedSince(context.Context, time.Time) ([]gateway.FunctionRef, error) {
	return nil, nil
}

type noAdmit struct{}

func (noAdmit) Admit(context.Context, metering.AdmissionRequest) (metering.Admission, error) {
	return metering.Admission{}, nil
}

func (noAdmit) Settle(context.Context, metering.AdmissionRequest, metering.Admission, bool, decimal.Decimal) (decimal.Decimal, error) {
	return decimal.Zero, nil
}

type noMeter struct{}

func (noMeter) Record(metering.Call) {}

// TestReadyzNamesDegradedDatabase checks /readyz answers 200 while the
// database answers and, once it does not, 503 with a JSON body saying what
// is down and, on a gateway, that cached keys and routes are still served.
func TestReadyzNamesDegradedDatabase(t *testing.T) {
	db := testenv.DB(t, testenv.Backend{Name: "embedded"})
	a := &app{db: db}
	gw, err := gateway.New(gateway.Config{MaxStale: 15 * time.Minute}, noKeys{}, noRoutes{}, noAdmit{}, noMeter{})
	if err != nil {
		t.Fatal(err)
	}
	ready := func(gw *gateway.Gateway, needsDB bool) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		a.handleReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil), gw, needsDB)
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
		return rec.Code, body
	}
	if code, body := ready(gw, false); code != 200 || body["status"] != "ready" {
		t.Fatalf("healthy: %d %v", code, body)
	}

	sqlDB, err := db.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	_ = sqlDB.Close() // the database stops answering
	// A gateway alone still serves what it has cached: ready, but degraded,
	// so a load balancer keeps sending it calls.
	code, body := ready(gw, false)
	problems, _ := body["problems"].([]any)
	if code != http.StatusOK || body["status"] != "degraded" || len(problems) != 1 ||
		!strings.HasPrefix(problems[0].(string), "database: unreachable; serving cached keys and routes") {
		t.Fatalf("gateway, database down: %d %v", code, body)
	}
	// serve also runs the API, which needs the database.
	code, body = ready(gw, true)
	if problems, _ := body["problems"].([]any); code != http.StatusServiceUnavailable || len(problems) != 1 ||
		!strings.Contains(problems[0].(string), "the portal API is down") {
		t.Fatalf("serve, database down: %d %v", code, body)
	}
	code, body = ready(nil, true)
	if problems, _ := body["problems"].([]any); code != http.StatusServiceUnavailable || len(problems) != 1 || problems[0] != "database: unreachable" {
		t.Fatalf("no gateway, database down: %d %v", code, body)
	}
}
