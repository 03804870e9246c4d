package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fnmarket/fnmarket/internal/browsertest"
)

// apiCall sends one JSON request to the portal's API with a bearer token
// and decodes the answer, failing the test on an unexpected status.
func apiCall(t *testing.T, method, url, token string, body any, want int) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		buf, _ := json.Marshal(body)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-API-Key", token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, res.StatusCode, want, raw)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

// seedBilling publishes two functions of vendor acme through the API
// (tagger: 2 free calls, then 0.001 per call; freebie: 5 free calls) and
// signs up a consumer with a key who calls tagger three times through the
// fake gateway. It returns the consumer's email, password and account id.
func seedBilling(t *testing.T, srv *portalServer) (email, password, accountID string) {
	t.Helper()
	vtok := apiCall(t, "POST", srv.url+"/api/v1/auth/signup", "", map[string]any{"email": "v@acme.test", "password": "correct horse battery", "name": "Ada"}, 201)["token"].(string)
	apiCall(t, "POST", srv.url+"/api/v1/vendor", vtok, map[string]any{"slug": "acme", "display_name": "Acme Labs"}, 201)
	for name, pricing := range map[string]map[string]any{
		"tagger":  {"currency": "USD", "per_call": "0.001", "per_compute_ms": "0.000002", "free_calls_per_month": 2},
		"freebie": {"currency": "USD", "per_call": "0.01", "per_compute_ms": "0", "free_calls_per_month": 5},
	} {
		fn := apiCall(t, "POST", srv.url+"/api/v1/functions", vtok, map[string]any{"name": name, "description": "A function.",
			"backend": map[string]any{"type": "http", "url": srv.upstream}, "pricing": pricing, "timeout_ms": 2000}, 201)
		apiCall(t, "POST", srv.url+"/api/v1/functions/"+fn["id"].(string)+"/publish", vtok, map[string]any{"version": 1}, 200)
	}
	email, password = "grace@example.test", "another long passphrase"
	ses := apiCall(t, "POST", srv.url+"/api/v1/auth/signup", "", map[string]any{"email": email, "password": password, "name": "Grace"}, 201)
	ctok := ses["token"].(string)
	accountID = ses["account"].(map[string]any)["id"].(string)
	key := apiCall(t, "POST", srv.url+"/api/v1/keys", ctok, map[string]any{"name": "ci", "monthly_spend_cap": "25"}, 201)["key"].(string)
	for range 3 {
		apiCall(t, "POST", srv.url+"/v1/invoke/acme/tagger", key, map[string]any{"n": 1}, 200)
	}
	return email, password, accountID
}

func login(b *browsertest.Browser, url, email, password string) {
	b.Do("log in", browsertest.Navigate(url+"/login"), browsertest.Visible("#login-form"),
		browsertest.Fill(`#login-form input[name="email"]`, email), browsertest.Fill(`#login-form input[name="password"]`, password),
		browsertest.Click(`#login-form button[type="submit"]`), browsertest.Visible("#logout"))
}

// TestBillingInBrowser: a consumer with only free calls sees what to do,
// sets and removes the account's spend cap (a bad one is refused next to
// its field), tops up, adds a card and then stands active; the billing page
// and each function page show the next call's price from the API.
func TestBillingInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{metered: true, stripe: true, standing: "free_only"})
	email, password, me := seedBilling(t, srv)
	b := newBrowser(t)
	login(b, srv.url, email, password)

	b.Do("billing page", browsertest.Click(`#nav a[href="/billing"]`),
		browsertest.WaitText("#billing-standing", "Free calls only"), browsertest.WaitText("#billing-standing-notice", "only free calls are admitted"),
		browsertest.Visible("#standing-add-card"),
		browsertest.WaitText("#billing-card", "None"), browsertest.WaitText("#billing-balance", "$0.00"), browsertest.WaitText("#billing-cap", "None"),
		browsertest.WaitText("#billing-mtd", "$0.00"),
		browsertest.WaitText("#billing-keys-table tbody", "ci"), browsertest.WaitText("#billing-keys-table", "$25.00"),
		// Three calls of tagger: 2 free, so the next one pays.
		browsertest.WaitText(`#billing-price-list li[data-function="acme/tagger"]`, "0.001 USD per call + 0.000002 USD per compute-ms; no free calls left this month (2 used)"),
		browsertest.WaitText(`#billing-price-list li[data-function="acme/tagger"]`, "At most $0.005 if it runs to its 2,000 ms timeout"))
	if b.EvalBool("unused function not listed", `!!document.querySelector('#billing-price-list li[data-function="acme/freebie"]')`) {
		t.Error("the billing page lists a function not used this month")
	}
	// month_to_date is the fake's exact sum: one paid call plus compute.
	mtd := b.Text("#billing-mtd")
	if !strings.HasPrefix(mtd, "$0.00") || mtd == "$0.00" {
		t.Errorf("month to date shows %q, want the exact cost of one paid call and compute", mtd)
	}
	// The key made every call: its spend is the month to date.
	if spend := b.Text("#billing-keys-table .key-spend"); spend != mtd {
		t.Errorf("key spend shows %q, want the month to date %q", spend, mtd)
	}
	shots := map[string]string{"billing (free only)": b.Shot("billing-free-only")}
	b.Do("top up from the notice", browsertest.Click("#standing-top-up"))
	if !b.EvalBool("amount focused", `document.activeElement === document.querySelector('#topup-amount') && location.pathname === '/billing'`) {
		t.Error("the notice's Top up button does not lead to the amount")
	}
	b.Do("phone", chromedp.EmulateViewport(390, 844), browsertest.Visible("#billing-account"))
	if !b.EvalBool("no overflow", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		t.Errorf("the billing page is %d px wide at a 390 px viewport", browsertest.Get(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)))
	}
	b.Do("desktop", chromedp.EmulateViewport(1280, 900))

	b.Do("bad cap", browsertest.Fill("#cap-amount", "lots"), browsertest.Click("#save-cap"),
		browsertest.WaitText(`#cap-form [data-error-for="monthly_spend_cap"]`, "decimal"))
	b.Do("set cap", browsertest.Fill("#cap-amount", "50"), browsertest.Click("#save-cap"), browsertest.WaitText("#billing-cap", "$50.00"), browsertest.Visible("#remove-cap"))
	if got := srv.billing.capOf(me); got != "50" {
		t.Errorf("after saving, the cap is %q, want 50", got)
	}
	b.Do("change cap", browsertest.Fill("#cap-amount", "12.5"), browsertest.Click("#save-cap"), browsertest.WaitText("#billing-cap", "$12.50"))
	b.Do("remove cap", browsertest.Click("#remove-cap"), browsertest.WaitText("#billing-cap", "None"))
	if got := srv.billing.capOf(me); got != "" {
		t.Errorf("after removing, the cap is %q, want none", got)
	}

	b.Do("top up too little", browsertest.Fill("#topup-amount", "2"), browsertest.Click("#topup"),
		browsertest.WaitText(`#topup-form [data-error-for="amount"]`, "at least 5.00"))
	b.Do("top up", browsertest.Fill("#topup-amount", "20"), browsertest.Click("#topup"), browsertest.WaitLocation("/billing?checkout=credit"),
		browsertest.WaitText("#billing-balance", "$20.00"))
	b.Do("add card", browsertest.Click("#add-card"), browsertest.WaitLocation("/billing?checkout=card"),
		browsertest.WaitText("#billing-card", "Visa ending in 4242"), browsertest.WaitText("#billing-standing", "Active"), browsertest.Visible("#billing-cap-panel"))
	if b.EvalBool("notice gone", `!!document.querySelector('#billing-standing-notice')`) {
		t.Error("the standing notice still shows for an active account")
	}
	shots["billing"] = b.Shot("billing")

	b.Do("next call of a paid function", browsertest.Navigate(srv.url+"/functions/acme/tagger"),
		browsertest.WaitText("#fn-next-call", "Your next call: 0.001 USD per call + 0.000002 USD per compute-ms"),
		browsertest.WaitText("#fn-next-call-worst", "$0.005"))
	b.Do("next call of a free one", browsertest.Navigate(srv.url+"/functions/acme/freebie"),
		browsertest.WaitText("#fn-next-call", "Your next call: free (5 free calls left this month) + 0 USD per compute-ms"))
	b.CheckConsole("end")
	for name, path := range shots {
		t.Logf("screenshot %s: %s", name, path)
	}
}

// TestBillingProblemsInBrowser: a suspended account is told why; without
// Stripe the card and top-up buttons show the API's problem instead of
// failing silently; signed out, the function page offers no next-call line.
func TestBillingProblemsInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{metered: true, stripe: false, standing: "suspended"})
	email, password, _ := seedBilling(t, srv)
	b := newBrowser(t)
	b.Do("signed out", browsertest.Navigate(srv.url+"/functions/acme/tagger"), browsertest.Visible("#fn-pricing"))
	if b.EvalBool("no next call", `!!document.querySelector('#fn-next-call')`) {
		t.Error("the next-call line shows to a signed-out visitor")
	}
	login(b, srv.url, email, password)
	b.Do("suspended", browsertest.Navigate(srv.url+"/billing"), browsertest.WaitText("#billing-standing", "Suspended"),
		browsertest.WaitText("#billing-standing-notice", "An invoice is past due"), browsertest.Visible(`#billing-standing-notice a[href="/invoices"]`))
	b.Do("card without Stripe", browsertest.Click("#add-card"), browsertest.WaitText("#add-card-error", "payments are not configured"))
	b.Do("top up without Stripe", browsertest.Fill("#topup-amount", "20"), browsertest.Click("#topup"),
		browsertest.WaitText("#topup-form .form-error", "payments are not configured"))
	b.CheckConsole("end")
}
