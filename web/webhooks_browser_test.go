package web

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fnmarket/fnmarket/internal/browsertest"
)

// signUp makes an account through the API and returns its id.
func signUp(t *testing.T, srv *portalServer, email, password string) string {
	t.Helper()
	ses := apiCall(t, "POST", srv.url+"/api/v1/auth/signup", "", map[string]any{"email": email, "password": password, "name": "Grace"}, 201)
	return ses["account"].(map[string]any)["id"].(string)
}

// endpointSel is the CSS selector of the endpoint card showing url.
func endpointSel(b *browsertest.Browser, url string) string {
	b.Do("find endpoint "+url, browsertest.WaitText("#webhooks-list", url))
	id := browsertest.Get(b, "endpoint id", chromedp.Evaluate[string](fmt.Sprintf(
		`([...document.querySelectorAll('#webhooks-list .endpoint')].find((e) => e.querySelector('.endpoint-url').textContent === %q) || {dataset: {}}).dataset.webhookId || ''`, url)))
	if id == "" {
		b.Fail("endpoint "+url, fmt.Errorf("no endpoint card for %s", url))
	}
	return fmt.Sprintf(`#webhooks-list .endpoint[data-webhook-id="%s"]`, id)
}

// TestWebhooksInBrowser: a consumer adds an endpoint (bad ones are refused
// next to their fields) and sees its secret once, sends a test event and
// sees the delivery, retries a failed delivery, sees why an endpoint was
// disabled and enables it again, and deletes one.
func TestWebhooksInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{webhooks: true})
	const email, password = "grace@example.test", "another long passphrase"
	me := signUp(t, srv, email, password)
	b := newBrowser(t)
	login(b, srv.url, email, password)

	b.Do("webhooks page", browsertest.Click(`#nav a[href="/webhook-endpoints"]`), browsertest.Visible("#webhook-form"),
		browsertest.WaitText("#webhooks-list .empty", "No endpoints yet"))
	if b.EvalBool("vendor events offered", `!!document.querySelector('#event-payout-sent')`) {
		t.Error("a consumer who sells nothing is offered vendor events")
	}
	b.Do("no events", browsertest.Fill("#webhook-url", "https://hooks.example.test/fnmarket"), browsertest.Click("#create-webhook"),
		browsertest.WaitText(`#webhook-form [data-error-for="events"]`, "at least one event"))
	b.Do("private address", browsertest.Fill("#webhook-url", "http://127.0.0.1:8080/hook"), browsertest.Click("#event-invoice-paid"), browsertest.Click("#create-webhook"),
		browsertest.WaitText(`#webhook-form [data-error-for="url"]`, "private"))
	if !b.EvalBool("url invalid", `document.querySelector('#webhook-url').getAttribute('aria-invalid') === 'true'`) {
		t.Error("the refused URL is not marked aria-invalid")
	}

	const hook = "https://hooks.example.test/fnmarket"
	b.Do("create", browsertest.Fill("#webhook-url", hook), browsertest.Click("#event-usage-threshold-reached"), browsertest.Click("#create-webhook"),
		browsertest.Visible("#new-webhook-secret"), browsertest.WaitText("#new-webhook", "you will not see it again"), browsertest.Visible("#new-webhook .key-row button"))
	secret := b.Value("#new-webhook-secret")
	if !strings.HasPrefix(secret, "whsec_") || len(secret) < 20 {
		t.Fatalf("the secret shown is %q", secret)
	}
	card := endpointSel(b, hook)
	b.Do("listed", browsertest.WaitText(card+" .endpoint-events", "invoice.paid"), browsertest.WaitText(card+" .endpoint-events", "usage.threshold_reached"),
		browsertest.WaitText(card+" .badge", "Active"), browsertest.WaitText(card+" .delivery-log", "Nothing sent yet"))
	if got := srv.webhooks.endpointsOf(me); !slices.Equal(got, []string{hook}) {
		t.Errorf("the fake holds endpoints %v, want %v", got, []string{hook})
	}
	shot := b.Shot("webhooks")

	// The secret is shown once: not after a reload.
	b.Do("reload", browsertest.Navigate(srv.url+"/webhook-endpoints"), browsertest.Visible(card))
	if b.EvalBool("secret gone", `!!document.querySelector('#new-webhook-secret') || document.body.textContent.includes(`+fmt.Sprintf("%q", secret)+`)`) {
		t.Error("the secret shows again after a reload")
	}

	// A test event is delivered and logged.
	b.Do("test event", browsertest.Click(card+" button[data-test]"),
		browsertest.WaitText(card+" .deliveries-table tbody", "webhook.test"),
		browsertest.WaitText(card+` .deliveries-table tr[data-status="delivered"] .delivery-code`, "HTTP 200"),
		browsertest.WaitText(card+` .deliveries-table tr[data-status="delivered"] .delivery-attempts`, "1"))
	if b.EvalBool("no retry on delivered", `!!document.querySelector('`+card+` tr[data-status="delivered"] button[data-retry]')`) {
		t.Error("a delivered delivery offers Retry")
	}

	// The receiver fails: the delivery fails; once it answers again, Retry
	// delivers it.
	srv.webhooks.answer(hook, 500)
	b.Do("failing test event", browsertest.Click(card+" button[data-test]"),
		browsertest.WaitText(card+` .deliveries-table tr[data-status="failed"] .delivery-code`, "HTTP 500"),
		browsertest.Visible(card+` tr[data-status="failed"] button[data-retry]`))
	srv.webhooks.answer(hook, 204)
	b.Do("retry", browsertest.Click(card+` tr[data-status="failed"] button[data-retry]`),
		browsertest.WaitText(card+" .deliveries-table tbody tr:first-child .delivery-code", "HTTP 204"),
		browsertest.WaitText(card+" .deliveries-table tbody tr:first-child .delivery-attempts", "2"),
		browsertest.WaitText(card+" .deliveries-table tbody tr:first-child .delivery-status", "delivered"))
	if b.EvalBool("nothing failed", `!!document.querySelector('`+card+` tr[data-status="failed"]')`) {
		t.Error("the retried delivery still shows as failed")
	}

	b.Do("phone", chromedp.EmulateViewport(390, 844), browsertest.Visible(card+" .deliveries-table"))
	if !b.EvalBool("no overflow", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		t.Errorf("the webhooks page is %d px wide at a 390 px viewport", browsertest.Get(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)))
	}
	b.Do("desktop", chromedp.EmulateViewport(1280, 900))

	// An endpoint the worker disabled says why.
	const dead = "https://gone.example.test/hook"
	b.Do("second endpoint", browsertest.Fill("#webhook-url", dead), browsertest.Click("#event-all"), browsertest.Click("#create-webhook"),
		browsertest.Visible("#new-webhook-secret"), browsertest.WaitText("#webhooks-list", dead))
	// The form was reset after creating: the boxes are enabled again.
	if !b.EvalBool("boxes enabled", `!document.querySelector('#event-key-revoked').disabled && !document.querySelector('#event-all').checked`) {
		t.Error("after creating with all events, the event boxes stay disabled")
	}
	deadCard := endpointSel(b, dead)
	b.Do("all events listed", browsertest.WaitText(deadCard+" .endpoint-events", "* (all)"))
	srv.webhooks.disable(me, dead, "it answered HTTP 410 to every attempt for 5 days")
	b.Do("disabled", browsertest.Navigate(srv.url+"/webhook-endpoints"), browsertest.Visible(deadCard),
		browsertest.WaitText(deadCard+" .badge", "Disabled"), browsertest.WaitText(deadCard+" .disabled-reason", "HTTP 410 to every attempt for 5 days"))
	// Its owner enables it again once it answers.
	b.Do("enable", browsertest.Click(deadCard+" button[data-enable]"), browsertest.WaitText(deadCard+" .badge", "Active"),
		chromedp.WaitNotPresent(chromedp.CSS(deadCard+" .disabled-reason")), browsertest.Visible(deadCard+" button[data-test]"))

	// Deleting asks first.
	b.Do("delete", browsertest.Click(card+" button[data-delete]"), browsertest.Visible("#confirm-delete-webhook"), browsertest.Click("#confirm-delete-webhook"),
		browsertest.Visible(deadCard))
	b.Do("deleted", chromedp.WaitNotPresent(chromedp.CSS(card)))
	if got := srv.webhooks.endpointsOf(me); !slices.Equal(got, []string{dead}) {
		t.Errorf("after deleting, the fake holds %v, want %v", got, []string{dead})
	}
	b.CheckConsole("end")
	t.Logf("screenshot webhooks: %s", shot)
}

// TestAlertThresholdsInBrowser: a key is created with alert thresholds (a
// bad list is refused next to its field) and shows them; keys made without
// show the default; the account cap's thresholds are shown and changed on
// the billing page.
func TestAlertThresholdsInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{metered: true, stripe: true, standing: "active", webhooks: true})
	email, password, me := seedBilling(t, srv)
	b := newBrowser(t)
	login(b, srv.url, email, password)

	row := func(name string) string {
		return fmt.Sprintf(`([...document.querySelectorAll('#keys-table tbody tr')].find((r) => r.querySelector('th').textContent === %q) || null)`, name)
	}
	b.Do("keys", browsertest.Click(`#nav a[href="/keys"]`), browsertest.Visible("#key-form"), browsertest.WaitText("#keys-table", "ci"),
		browsertest.WaitText("#keys-table thead", "Alerts at"))
	if got := browsertest.Get(b, "default", chromedp.Evaluate[string](row("ci")+`.querySelector('.key-alerts').textContent`)); got != "80% and 100%" {
		t.Errorf("a key made without thresholds shows %q, want the default 80%% and 100%%", got)
	}
	b.Do("bad threshold", browsertest.Fill("#key-name", "alerts"), browsertest.Fill("#key-cap", "10"), browsertest.Fill("#key-thresholds", "50, 80, 150"),
		browsertest.Click("#create-key"), browsertest.WaitText(`#key-form [data-error-for="alert_thresholds"]`, "whole percent from 1 to 100"))
	if !b.EvalBool("marked invalid", `document.querySelector('#key-thresholds').getAttribute('aria-invalid') === 'true' && !document.querySelector('#new-key-value')`) {
		t.Error("the bad thresholds are not marked aria-invalid, or a key was made")
	}
	b.Do("not a number", browsertest.Fill("#key-thresholds", "50, lots"), browsertest.Click("#create-key"),
		browsertest.WaitText(`#key-form [data-error-for="alert_thresholds"]`, "whole percent"))
	b.Do("create", browsertest.Fill("#key-thresholds", "100, 50 80%"), browsertest.Click("#create-key"), browsertest.Visible("#new-key-value"),
		browsertest.WaitText("#keys-table", "alerts"))
	if got := browsertest.Get(b, "alerts", chromedp.Evaluate[string](row("alerts")+`.querySelector('.key-alerts').textContent`)); got != "50%, 80% and 100%" {
		t.Errorf("the key shows thresholds %q, want 50%%, 80%% and 100%%", got)
	}
	id := browsertest.Get(b, "key id", chromedp.Evaluate[string](row("alerts")+`.dataset.keyId`))
	if got := srv.webhooks.thresholdsOf(id); !slices.Equal(got, []int{50, 80, 100}) {
		t.Errorf("the fake holds thresholds %v for the key, want [50 80 100]", got)
	}

	b.Do("billing", browsertest.Click(`#nav a[href="/billing"]`), browsertest.Visible("#cap-thresholds"),
		browsertest.WaitText("#billing-alerts", "80% and 100% of the cap, once one is set"),
		browsertest.WaitText(`#billing-keys-table tr[data-key-id="`+id+`"] .key-alerts`, "50%, 80% and 100%"))
	if v := b.Value("#cap-thresholds"); v != "80, 100" {
		t.Errorf("the cap form shows thresholds %q, want 80, 100", v)
	}
	b.Do("bad cap threshold", browsertest.Fill("#cap-amount", "40"), browsertest.Fill("#cap-thresholds", "0, 90"), browsertest.Click("#save-cap"),
		browsertest.WaitText(`#cap-form [data-error-for="alert_thresholds"]`, "whole percent from 1 to 100"))
	if got := srv.billing.capOf(me); got != "" {
		t.Errorf("a refused threshold set the cap to %q", got)
	}
	b.Do("cap thresholds", browsertest.Fill("#cap-thresholds", "90 50"), browsertest.Click("#save-cap"),
		browsertest.WaitText("#billing-cap", "$40.00"), browsertest.WaitText("#billing-alerts", "Alerts at 50% and 90% of the cap"))
	if got := srv.billing.thresholdsOf(me); !slices.Equal(got, []int{50, 90}) {
		t.Errorf("the fake holds cap thresholds %v, want [50 90]", got)
	}
	if v := b.Value("#cap-thresholds"); v != "50, 90" {
		t.Errorf("after saving, the cap form shows thresholds %q, want 50, 90", v)
	}
	b.CheckConsole("end")
}

// TestAuditLogInBrowser: the audit page lists the caller's entries newest
// first and pages through them with next_cursor.
func TestAuditLogInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{webhooks: true})
	const email, password = "grace@example.test", "another long passphrase"
	me := signUp(t, srv, email, password)
	other := signUp(t, srv, "mallory@example.test", password)
	start := time.Now().UTC().Add(-48 * time.Hour)
	var entries []fakeAuditEntry
	for i := 1; i <= 25; i++ {
		entries = append(entries, fakeAuditEntry{At: start.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), Actor: email,
			Action: "key.create", Target: fmt.Sprintf("key_%02d", i), IP: "203.0.113.7"})
	}
	srv.webhooks.record(me, entries...)
	srv.webhooks.record(other, fakeAuditEntry{At: start.Format(time.RFC3339), Actor: "mallory@example.test", Action: "login.failed", Target: "secret_target", IP: "198.51.100.1"})
	b := newBrowser(t)
	login(b, srv.url, email, password)

	rows := `document.querySelectorAll('#audit-table tbody tr')`
	b.Do("audit page", browsertest.Click(`#nav a[href="/audit"]`), browsertest.Visible("#audit-table"),
		browsertest.WaitText("#audit-table tbody tr:first-child", "key_25"), browsertest.WaitText("#audit-count", "20 entries shown; older ones follow"),
		browsertest.Visible("#audit-more"))
	if !b.EvalBool("first page", rows+`.length === 20 && [...`+rows+`].at(-1).textContent.includes('key_06') && document.querySelector('#audit-table').textContent.includes('203.0.113.7')`) {
		t.Error("the first page is not the 20 newest entries")
	}
	b.Do("older", browsertest.Click("#audit-more"), browsertest.WaitText("#audit-count", "25 entries shown."))
	if !b.EvalBool("all pages", rows+`.length === 25 && [...`+rows+`].at(-1).textContent.includes('key_01') && document.querySelector('#audit-more').hidden`) {
		t.Error("after the second page the log does not end with the oldest entry, or still offers more")
	}
	if b.EvalBool("others' entries", `document.body.textContent.includes('secret_target')`) {
		t.Error("the audit log shows another account's entry")
	}
	b.CheckConsole("end")
}
