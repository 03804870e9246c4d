package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/apiclient"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestReadmeSessionWithGeneratedClient drives the README's first session
// (sign up, become a vendor, create a function, publish it, create a key)
// with the client generated from the served OpenAPI document, so the
// document is checked against what a generated client needs.
func TestReadmeSessionWithGeneratedClient(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t, testenv.Backends()[0])
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
	kinds, err := backend.NewRegistry(gateway.HTTPKind{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(api.Deps{
		Accounts:   accounts.NewStore(db, clock, bcrypt.MinCost),
		Catalog:    catalogstore.NewStore(db, clock),
		Sessions:   api.NewSessions([]byte("test-secret-test-secret-test-secret-0123"), time.Hour, clock),
		GatewayURL: "http://gw.test",
		Backends:   kinds,
	})
	portal := httptest.NewServer(srv)
	t.Cleanup(portal.Close)
	// The function's backend: a local server (private upstreams allowed).
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(upstream.Close)

	ctx := context.Background()
	c, err := apiclient.NewClientWithResponses(portal.URL)
	if err != nil {
		t.Fatal(err)
	}
	signup, err := c.SignupWithResponse(ctx, apiclient.Signup{Email: "ada@example.com", Password: "correct horse battery", Name: "Ada"})
	if err != nil || signup.JSON201 == nil {
		t.Fatalf("signup: %v %s", err, body(signup))
	}
	if signup.JSON201.Account.Vendor != nil {
		t.Errorf("a new account is a vendor: %+v", signup.JSON201.Account.Vendor)
	}
	bearer := apiclient.RequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+signup.JSON201.Token)
		return nil
	})

	vendor, err := c.BecomeVendorWithResponse(ctx, apiclient.VendorRequest{Slug: "acme", DisplayName: "Acme"}, bearer)
	if err != nil || vendor.JSON201 == nil || vendor.JSON201.Slug != "acme" {
		t.Fatalf("become vendor: %v %s", err, body(vendor))
	}
	url, desc, timeout := upstream.URL+"/echo", "Echoes what it gets", int64(5000)
	perCall, usd := "0.001", "USD"
	fn, err := c.CreateFunctionWithResponse(ctx, apiclient.CreateFunction{
		Name: "echo", Description: &desc, TimeoutMs: &timeout,
		Backend: apiclient.BackendInput{Type: apiclient.BackendInputTypeHttp, Url: &url},
		Pricing: apiclient.PricingInput{Currency: &usd, PerCall: &perCall, PerComputeMs: "0.000002"},
	}, bearer)
	if err != nil || fn.JSON201 == nil {
		t.Fatalf("create function: %v %s", err, body(fn))
	}
	if fn.JSON201.PublishedVersion != nil || len(fn.JSON201.Versions) != 1 {
		t.Errorf("new function: published %v with %d versions, want unpublished with 1", fn.JSON201.PublishedVersion, len(fn.JSON201.Versions))
	}
	pub, err := c.PublishFunctionWithResponse(ctx, fn.JSON201.Id, apiclient.Publish{Version: 1}, bearer)
	if err != nil || pub.JSON200 == nil || pub.JSON200.PublishedVersion == nil || *pub.JSON200.PublishedVersion != 1 {
		t.Fatalf("publish: %v %s", err, body(pub))
	}
	key, err := c.CreateKeyWithResponse(ctx, apiclient.CreateKey{Name: "app"}, bearer)
	if err != nil || key.JSON201 == nil || key.JSON201.Key == nil || !strings.HasPrefix(*key.JSON201.Key, key.JSON201.Prefix) {
		t.Fatalf("create key: %v %s", err, body(key))
	}
	if key.JSON201.LastUsedAt != nil || key.JSON201.RevokedAt != nil || key.JSON201.MonthlySpendCap != nil {
		t.Errorf("new key: %+v", key.JSON201)
	}
	keys, err := c.ListKeysWithResponse(ctx, bearer)
	if err != nil || keys.JSON200 == nil || len(keys.JSON200.Items) != 1 || keys.JSON200.Items[0].Key != nil {
		t.Fatalf("list keys: %v %s", err, body(keys))
	}
	listing, err := c.GetListingWithResponse(ctx, "acme", "echo")
	if err != nil || listing.JSON200 == nil || listing.JSON200.InvokeUrl != "http://gw.test/v1/invoke/acme/echo" || listing.JSON200.Pricing.PerCall != "0.001" {
		t.Fatalf("catalog listing: %v %s", err, body(listing))
	}
	// Problems decode too.
	again, err := c.BecomeVendorWithResponse(ctx, apiclient.VendorRequest{Slug: "acme-two", DisplayName: "Again"}, bearer)
	if err != nil || again.ApplicationproblemJSONDefault == nil || again.ApplicationproblemJSONDefault.Code != fnmarket.ECONFLICT {
		t.Fatalf("second vendor: %v %s", err, body(again))
	}
}

// body shows an answer (a generated *XResponse) in a failure message.
func body(r any) string {
	v := reflect.ValueOf(r)
	if !v.IsValid() || v.IsNil() {
		return "(no answer)"
	}
	return string(v.Elem().FieldByName("Body").Bytes())
}
