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

// TestKeysInBrowser: a key is made with an expiry, functions picked from
// the catalog and a rate limit (a past expiry and a rate over the platform
// default are refused next to their fields); the list shows last use,
// expiry (expired, expiring soon), scope (collapsed when long), rate limit
// and thresholds; editing saves a new rate, cap and scope (a bad rate is
// refused in the dialog); rotating asks for the grace, shows the new secret once
// and how long the old one works; nothing overflows at phone width.
func TestKeysInBrowser(t *testing.T) {
	srv := startPortalWith(t, portalOptions{metered: true, stripe: true, standing: "active", webhooks: true, keys: true})
	email, password, _ := seedBilling(t, srv)
	// A third function, so a scope of three is collapsed in the list.
	vtok := apiCall(t, "POST", srv.url+"/api/v1/auth/login", "", map[string]any{"email": "v@acme.test", "password": "correct horse battery"}, 200)["token"].(string)
	fn := apiCall(t, "POST", srv.url+"/api/v1/functions", vtok, map[string]any{"name": "geocoder", "description": "Finds places.",
		"backend": map[string]any{"type": "http", "url": srv.upstream}, "pricing": map[string]any{"currency": "USD", "per_call": "0.001", "per_compute_ms": "0", "free_calls_per_month": 0}, "timeout_ms": 2000}, 201)
	apiCall(t, "POST", srv.url+"/api/v1/functions/"+fn["id"].(string)+"/publish", vtok, map[string]any{"version": 1}, 200)

	b := newBrowser(t)
	login(b, srv.url, email, password)
	row := func(name string) string {
		return fmt.Sprintf(`([...document.querySelectorAll('#keys-table tbody tr')].find((r) => r.querySelector('th').textContent === %q) || null)`, name)
	}
	cell := func(name, class string) string {
		return browsertest.Get(b, name+" "+class, chromedp.Evaluate[string](fmt.Sprintf(`((r) => r && r.querySelector('.%s') ? r.querySelector('.%s').textContent : 'no such cell')(%s)`, class, class, row(name))))
	}

	// The key seeded through the API: all functions, the platform's rate
	// limit, no expiry.
	b.Do("keys", browsertest.Click(`#nav a[href="/keys"]`), browsertest.Visible("#key-form"), browsertest.WaitText("#keys-table", "ci"),
		browsertest.WaitText("#keys-table thead", "May call"), browsertest.WaitText("#scope-results", "acme/tagger"))
	ci := browsertest.Get(b, "ci id", chromedp.Evaluate[string](row("ci")+`.dataset.keyId`))
	for class, want := range map[string]string{"key-scope": "All functions", "key-rate": "Platform default", "key-expires": "Never", "key-alerts": "80% and 100%"} {
		if got := cell("ci", class); got != want {
			t.Errorf("the seeded key shows %s %q, want %q", class, got, want)
		}
	}

	// A past expiry and a rate over the platform default are refused next
	// to their fields; no key is made.
	b.Do("bad expiry and rate", browsertest.Fill("#key-name", "deploy"), browsertest.Fill("#key-expires", "2020-01-31T10:00"), browsertest.Fill("#key-rate-limit", "500"),
		browsertest.WaitText("#key-expires-utc", "Sent as 2020-01-"), browsertest.Click("#create-key"),
		browsertest.WaitText(`#key-form [data-error-for="expires_at"]`, "Must be in the future"),
		browsertest.WaitText(`#key-form [data-error-for="rate_limit_per_second"]`, "from 1 to 100 (the platform default)"))
	if !b.EvalBool("marked invalid", `document.querySelector('#key-expires').getAttribute('aria-invalid') === 'true' && document.querySelector('#key-rate-limit').getAttribute('aria-invalid') === 'true' && !document.querySelector('#new-key-value')`) {
		t.Error("the refused expiry and rate are not marked aria-invalid, or a key was made")
	}

	// Scopes are picked from the catalog: searched, checked, removed by
	// their chip and checked again.
	b.Do("search tagger", browsertest.Fill("#scope-q", "tagger"), browsertest.Visible(`#scope-results[data-q="tagger"] input[data-fn="acme/tagger"]`),
		browsertest.Click(`#scope-results input[data-fn="acme/tagger"]`), browsertest.WaitText("#scope-summary", "only this function"),
		browsertest.WaitText("#scope-chosen", "acme/tagger"))
	if b.EvalBool("search narrows", `!!document.querySelector('#scope-results input[data-fn="acme/freebie"]')`) {
		t.Error("searching the catalog for tagger still lists acme/freebie")
	}
	b.Do("all functions", browsertest.Fill("#scope-q", ""), browsertest.Visible(`#scope-results[data-q=""] input[data-fn="acme/geocoder"]`),
		browsertest.Click(`#scope-results input[data-fn="acme/geocoder"]`), browsertest.Click(`#scope-results input[data-fn="acme/freebie"]`),
		browsertest.WaitText("#scope-summary", "these 3 functions"))
	if !b.EvalBool("search keeps picks", `document.querySelector('#scope-results input[data-fn="acme/tagger"]').checked`) {
		t.Error("a function picked under an earlier search is not checked in the next one")
	}
	b.Do("remove chip", browsertest.Click(`#scope-chosen li[data-fn="acme/freebie"] button`), browsertest.WaitText("#scope-summary", "these 2 functions"))
	if b.EvalBool("unchecked", `document.querySelector('#scope-results input[data-fn="acme/freebie"]').checked`) {
		t.Error("a function removed by its chip stays checked")
	}
	b.Do("re-add", browsertest.Click(`#scope-results input[data-fn="acme/freebie"]`), browsertest.WaitText("#scope-summary", "these 3 functions"))

	// A good key: the expiry is the reader's local time, sent in UTC.
	const local = "2031-06-15T09:30"
	wantExpiry := browsertest.Get(b, "utc", chromedp.Evaluate[string](`new Date('`+local+`').toISOString().replace('.000Z', 'Z')`))
	b.Do("create", browsertest.Fill("#key-expires", local), browsertest.Fill("#key-rate-limit", "12"), browsertest.WaitText("#key-expires-utc", "Sent as "+wantExpiry),
		browsertest.Click("#create-key"), browsertest.Visible("#new-key-value"), browsertest.WaitText("#keys-table", "deploy"))
	secret := b.Value("#new-key-value")
	id := browsertest.Get(b, "deploy id", chromedp.Evaluate[string](row("deploy")+`.dataset.keyId`))
	got := srv.keys.extraOf(id)
	if got.ExpiresAt == nil || *got.ExpiresAt != wantExpiry || got.RateLimit == nil || *got.RateLimit != 12 ||
		!slices.Equal(got.AllowedFunctions, []string{"acme/freebie", "acme/geocoder", "acme/tagger"}) {
		t.Errorf("the fake holds expires_at %v, rate %v, allowed %v; want %s, 12, the three functions", deref(got.ExpiresAt), deref(got.RateLimit), got.AllowedFunctions, wantExpiry)
	}
	if !b.EvalBool("form reset", `document.querySelector('#scope-summary').textContent.includes('all functions') && !document.querySelector('#scope-chosen li') && document.querySelector('#key-expires').value === '' && document.querySelector('#key-rate-limit').value === ''`) {
		t.Error("after creating, the form keeps the scopes, expiry or rate")
	}
	if got := cell("deploy", "key-rate"); got != "12/s" {
		t.Errorf("the new key shows rate %q, want 12/s", got)
	}
	if got := cell("deploy", "key-last-used"); got != "Never" {
		t.Errorf("the new key shows last use %q, want Never", got)
	}
	if got := cell("deploy", "key-scope"); !strings.HasPrefix(got, "acme/freebie, acme/geocoder and 1 more") {
		t.Errorf("the new key's scope shows %q, want two names and 1 more", got)
	}
	b.Do("scope expands", browsertest.Click(`#keys-table tr[data-key-id="`+id+`"] .scope-more summary`),
		browsertest.Visible(`#keys-table tr[data-key-id="`+id+`"] .scope-list`), browsertest.WaitText(`#keys-table tr[data-key-id="`+id+`"] .scope-list`, "acme/tagger"))

	// Expiry at a glance: soon, expired, later.
	srv.keys.expire(ci, time.Now().Add(3*24*time.Hour+time.Hour))
	b.Do("expiring soon", browsertest.Navigate(srv.url+"/keys"), browsertest.WaitText(`#keys-table tr[data-key-id="`+ci+`"] .key-expires .badge-warn`, "expires in 3 days"))
	if !b.EvalBool("later", row("deploy")+`.querySelector('.key-expires').dataset.expiry === 'later' && `+row("deploy")+`.querySelector('.key-status').textContent.includes('Active')`) {
		t.Error("the key expiring in 2031 is not shown as active and expiring later")
	}
	if b.EvalBool("secret once", `!!document.querySelector('#new-key-value') || document.body.textContent.includes(`+fmt.Sprintf("%q", secret)+`)`) {
		t.Error("the new key's secret shows again after a reload")
	}
	if !b.EvalBool("table fits", `(() => { const w = document.querySelector('#keys-list .table-wrap'); return w.scrollWidth <= w.clientWidth + 1; })()`) {
		t.Errorf("the keys table scrolls sideways at 1280 px: %d px in %d px", browsertest.Get(b, "table width", chromedp.Evaluate[int](`document.querySelector('#keys-table').scrollWidth`)),
			browsertest.Get(b, "wrap width", chromedp.Evaluate[int](`document.querySelector('#keys-list .table-wrap').clientWidth`)))
	}
	shot := b.Shot("keys-extended")

	// Editing: a rate over the platform default is refused in the dialog
	// and changes nothing; a new rate and cap and an emptied scope are
	// saved; the secret is not shown again.
	editSel := `#keys-table tr[data-key-id="` + id + `"]`
	b.Do("edit dialog", browsertest.Click(editSel+" button[data-edit]"), browsertest.Visible("#edit-key-dialog"),
		browsertest.Fill("#edit-key-rate-limit", "500"), browsertest.Click("#confirm-edit"),
		browsertest.WaitText(`#edit-key-form [data-error-for="rate_limit_per_second"]`, "from 1 to 100"))
	if got := srv.keys.extraOf(id); got.RateLimit == nil || *got.RateLimit != 12 {
		t.Fatalf("a refused edit changed the rate to %v", deref(got.RateLimit))
	}
	b.Do("edit saved", browsertest.Fill("#edit-key-rate-limit", "7"), browsertest.Fill("#edit-key-cap", "12.50"), browsertest.Fill("#edit-key-scope", ""),
		browsertest.Click("#confirm-edit"), chromedp.WaitNotPresent(chromedp.CSS("#edit-key-dialog")), browsertest.WaitText(editSel+" .key-rate", "7/s"))
	if got := srv.keys.extraOf(id); got.RateLimit == nil || *got.RateLimit != 7 || len(got.AllowedFunctions) != 0 {
		t.Errorf("after the edit the fake holds rate %v, allowed %v; want 7 and all functions", deref(got.RateLimit), got.AllowedFunctions)
	}
	if got := cell("deploy", "key-scope"); got != "All functions" {
		t.Errorf("the edited key's scope shows %q, want All functions", got)
	}
	if got := cell("deploy", "key-cap"); !strings.Contains(got, "12.50") {
		t.Errorf("the edited key's cap shows %q, want 12.50", got)
	}
	if b.EvalBool("no secret after edit", `!!document.querySelector('#new-key-value')`) {
		t.Error("editing a key showed a secret")
	}

	// Rotating asks for the grace; a bad custom one is refused in the dialog.
	sel := `#keys-table tr[data-key-id="` + id + `"]`
	oldPrefix := strings.TrimSuffix(b.Text(sel+" .key-prefix"), "…")
	b.Do("rotate dialog", browsertest.Click(sel+" button[data-rotate]"), browsertest.Visible("#rotate-dialog"), browsertest.WaitText("#rotate-dialog", oldPrefix))
	if !b.EvalBool("1 hour by default", `document.querySelector('#grace-3600').checked && document.querySelector('.grace-custom').hidden`) {
		t.Error("the rotate dialog does not start at a 1 hour grace with the custom seconds hidden")
	}
	b.Do("bad grace", browsertest.Click("#grace-custom"), browsertest.Visible("#grace-custom-seconds"), browsertest.Fill("#grace-custom-seconds", "99999999"),
		browsertest.Click("#confirm-rotate"), browsertest.WaitText(`#rotate-form [data-error-for="grace_seconds"]`, "from 0 to 604800"))
	if !b.EvalBool("focus leaves the seconds", `(() => { document.querySelector('#confirm-rotate').focus();
		document.querySelector('#grace-custom-seconds').dispatchEvent(new Event('change', {bubbles: true}));
		return document.activeElement.id === 'confirm-rotate'; })()`) {
		t.Error("a change of the custom seconds pulls the focus back to them")
	}
	if srv.keys.extraOf(id).PreviousExpiresAt != nil {
		t.Fatal("a refused grace rotated the key")
	}
	before := time.Now()
	b.Do("rotate 24h", browsertest.Click("#grace-86400"), browsertest.Click("#confirm-rotate"), chromedp.WaitNotPresent(chromedp.CSS("#rotate-dialog")),
		browsertest.Visible("#new-key-value"), browsertest.WaitText("#new-key-h", "The new secret of “deploy”"),
		browsertest.WaitText("#old-key-until", oldPrefix+"… works until"), browsertest.WaitText(sel+" .key-grace", "Old key works until"))
	rotated := b.Value("#new-key-value")
	if rotated == secret || !strings.HasPrefix(rotated, "fnm_") {
		t.Errorf("the rotated secret is %q (the old one was %q)", rotated, secret)
	}
	if p := strings.TrimSuffix(b.Text(sel+" .key-prefix"), "…"); p == oldPrefix || !strings.HasPrefix(rotated, p) {
		t.Errorf("after rotating the list shows prefix %q, want the new secret's", p)
	}
	if end := deref(srv.keys.extraOf(id).PreviousExpiresAt); !graceEnds(end, before.Add(24*time.Hour)) {
		t.Errorf("the old secret works until %q, want 24 hours after the rotation", end)
	}
	b.Do("reload after rotate", browsertest.Navigate(srv.url+"/keys"), browsertest.WaitText(sel+" .key-grace", "Old key works until"))
	if b.EvalBool("rotated secret once", `!!document.querySelector('#new-key-value') || document.body.textContent.includes(`+fmt.Sprintf("%q", rotated)+`)`) {
		t.Error("the rotated secret shows again after a reload")
	}

	// Without a grace the old key stops at once.
	ciSel := `#keys-table tr[data-key-id="` + ci + `"]`
	b.Do("rotate now", browsertest.Click(ciSel+" button[data-rotate]"), browsertest.Visible("#rotate-dialog"), browsertest.Click("#grace-0"), browsertest.Click("#confirm-rotate"),
		browsertest.WaitText("#old-key-until", "no longer works"), browsertest.WaitText("#new-key-h", "“ci”"))
	if b.EvalBool("no grace line", `!!document.querySelector('`+ciSel+` .key-grace')`) {
		t.Error("a key rotated without grace shows the old key's grace line")
	}

	// An expired key says so.
	srv.keys.expire(ci, time.Now().Add(-time.Hour))
	b.Do("expired", browsertest.Navigate(srv.url+"/keys"), browsertest.WaitText(ciSel+" .key-expires .badge-bad", "expired"),
		browsertest.WaitText(ciSel+" .key-status", "Expired"))

	// A picked function unpublished before the key is made is named in
	// the scope's field error (allowed_functions[0]).
	b.Do("pick geocoder", browsertest.Fill("#key-name", "maps"), browsertest.Fill("#scope-q", "geo"),
		browsertest.Visible(`#scope-results[data-q="geo"] input[data-fn="acme/geocoder"]`), browsertest.Click(`#scope-results input[data-fn="acme/geocoder"]`),
		browsertest.WaitText("#scope-summary", "only this function"))
	apiCall(t, "POST", srv.url+"/api/v1/functions/"+fn["id"].(string)+"/unpublish", vtok, nil, 200)
	b.Do("unpublished scope", browsertest.Click("#create-key"),
		browsertest.WaitText(`#key-form [data-error-for="allowed_functions"]`, "Is not a published function: acme/geocoder"))
	if b.EvalBool("no key made", `!!document.querySelector('#new-key-value') || document.querySelector('#keys-table').textContent.includes('maps')`) {
		t.Error("a key was made with an unpublished function in its scope")
	}

	b.Do("phone", chromedp.EmulateViewport(390, 844), browsertest.Visible("#keys-table"), browsertest.Visible("#scope-results"))
	if !b.EvalBool("no overflow", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		t.Errorf("the keys page is %d px wide at a 390 px viewport", browsertest.Get(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)))
	}
	b.Do("phone dialog", browsertest.Click(sel+" button[data-rotate]"), browsertest.Visible("#rotate-dialog"))
	if !b.EvalBool("dialog fits", `document.querySelector('#rotate-dialog').getBoundingClientRect().right <= window.innerWidth && document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		t.Error("the rotate dialog does not fit a 390 px viewport")
	}
	b.Shot("keys-phone")
	b.Do("desktop", chromedp.EmulateViewport(1280, 900))
	b.CheckConsole("end")
	t.Logf("screenshot keys: %s", shot)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// graceEnds reports whether the RFC 3339 time s is want, to a minute.
func graceEnds(s any, want time.Time) bool {
	str, _ := s.(string)
	got, err := time.Parse(time.RFC3339, str)
	return err == nil && got.Sub(want).Abs() < time.Minute
}
