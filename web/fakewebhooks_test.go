package web

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/api"
)

// webhookEventTypes are the event types of the contract ("Webhooks
// (outbound)"); "*" subscribes to all of them.
var webhookEventTypes = []string{
	"usage.threshold_reached", "invoice.issued", "invoice.paid", "invoice.voided", "payment.failed", "credits.added",
	"key.expiring", "key.revoked", "statement.issued", "payout.sent", "function.error_rate_high", "webhook.test",
}

// defaultThresholds are the alert thresholds of a key or account cap that
// never set any.
var defaultThresholds = []int{80, 100}

// fakeWebhooks serves the routes of "Webhooks (outbound)" and the audit log
// of "API keys, extended", which other parts of the API provide: POST, GET
// and DELETE /api/v1/webhooks[/{id}], GET .../{id}/deliveries, POST
// .../deliveries/{delivery_id}/retry, POST .../{id}/test and GET
// /api/v1/audit. It authenticates the session cookie and the CSRF header as
// the API does and answers problems as problem+json. Deliveries are
// attempted at once, in the request, against a pretend receiver whose
// answer a test sets per URL (answer); 2xx delivers, anything else fails.
// It also records the alert thresholds of keys (keysWithAlerts, in front of
// the API's own key routes).
type fakeWebhooks struct {
	sessions *api.Sessions

	mu         sync.Mutex
	seq        int
	endpoints  map[string][]*fakeEndpoint // by account, oldest first
	deliveries map[string][]*fakeDelivery // by endpoint, oldest first
	receiver   map[string]int             // status code answered per URL; 200 if unset
	audit      map[string][]fakeAuditEntry
	thresholds map[string][]int // alert thresholds per key id
}

type fakeEndpoint struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Secret         string   `json:"secret,omitempty"`
	CreatedAt      string   `json:"created_at"`
	DisabledAt     string   `json:"disabled_at,omitempty"`
	DisabledReason string   `json:"disabled_reason,omitempty"`
}

type fakeDelivery struct {
	ID             string  `json:"id"`
	EventID        string  `json:"event_id"`
	Type           string  `json:"type"`
	Status         string  `json:"status"`
	Attempts       int     `json:"attempts"`
	LastStatusCode *int    `json:"last_status_code"`
	NextAttemptAt  *string `json:"next_attempt_at"`
	CreatedAt      string  `json:"created_at"`
}

type fakeAuditEntry struct {
	At     string `json:"at"`
	Actor  string `json:"actor"`
	Action string `json:"action"`
	Target string `json:"target"`
	IP     string `json:"ip"`
}

func newFakeWebhooks(s *api.Sessions) *fakeWebhooks {
	return &fakeWebhooks{sessions: s, endpoints: map[string][]*fakeEndpoint{}, deliveries: map[string][]*fakeDelivery{},
		receiver: map[string]int{}, audit: map[string][]fakeAuditEntry{}, thresholds: map[string][]int{}}
}

func (f *fakeWebhooks) register(e *echo.Echo) {
	e.POST("/api/v1/webhooks", f.handle(func(c echo.Context, acc string) error {
		var req struct {
			URL    string   `json:"url"`
			Events []string `json:"events"`
		}
		if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil {
			return fnmarket.Errorf(fnmarket.EINVALID, "the body must be a JSON object {url, events}")
		}
		v := fnmarket.Validation{}
		checkWebhookURL(v, req.URL)
		if len(req.Events) == 0 {
			v.Add("events", "choose at least one event type (\"*\" for all)")
		}
		for i, ev := range req.Events {
			if ev != "*" && !slices.Contains(webhookEventTypes, ev) {
				v.Add(fmt.Sprintf("events[%d]", i), fmt.Sprintf("%q is not an event type", ev))
			}
		}
		if err := v.Err(); err != nil {
			return err
		}
		secret := make([]byte, 24)
		_, _ = rand.Read(secret)
		ep := &fakeEndpoint{ID: f.id("we"), URL: req.URL, Events: req.Events, CreatedAt: now()}
		f.endpoints[acc] = append(f.endpoints[acc], ep)
		f.log(c, acc, "webhook.create", ep.ID)
		out := *ep
		out.Secret = "whsec_" + base64.StdEncoding.EncodeToString(secret)
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusCreated, out)
	}))
	e.GET("/api/v1/webhooks", f.handle(func(c echo.Context, acc string) error {
		items := []fakeEndpoint{}
		for _, ep := range f.endpoints[acc] {
			items = append(items, *ep)
		}
		return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": ""})
	}))
	e.DELETE("/api/v1/webhooks/:id", f.handle(func(c echo.Context, acc string) error {
		ep, err := f.endpoint(acc, c.Param("id"))
		if err != nil {
			return err
		}
		f.endpoints[acc] = slices.DeleteFunc(f.endpoints[acc], func(e *fakeEndpoint) bool { return e == ep })
		delete(f.deliveries, ep.ID)
		f.log(c, acc, "webhook.delete", ep.ID)
		return c.NoContent(http.StatusNoContent)
	}))
	e.GET("/api/v1/webhooks/:id/deliveries", f.handle(func(c echo.Context, acc string) error {
		ep, err := f.endpoint(acc, c.Param("id"))
		if err != nil {
			return err
		}
		items := []fakeDelivery{}
		for _, d := range slices.Backward(f.deliveries[ep.ID]) {
			items = append(items, *d)
		}
		return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": ""})
	}))
	e.POST("/api/v1/webhooks/:id/deliveries/:delivery_id/retry", f.handle(func(c echo.Context, acc string) error {
		ep, err := f.endpoint(acc, c.Param("id"))
		if err != nil {
			return err
		}
		for _, d := range f.deliveries[ep.ID] {
			if d.ID == c.Param("delivery_id") {
				if d.Status == "delivered" {
					return fnmarket.Errorf(fnmarket.ECONFLICT, "delivery %s was already delivered", d.ID)
				}
				f.attempt(ep, d)
				return c.NoContent(http.StatusAccepted)
			}
		}
		return fnmarket.Errorf(fnmarket.ENOTFOUND, "no delivery %q of this endpoint", c.Param("delivery_id"))
	}))
	e.POST("/api/v1/webhooks/:id/enable", f.handle(func(c echo.Context, acc string) error {
		ep, err := f.endpoint(acc, c.Param("id"))
		if err != nil {
			return err
		}
		ep.DisabledAt, ep.DisabledReason = "", ""
		out := *ep
		out.Secret = ""
		return c.JSON(http.StatusOK, out)
	}))
	e.POST("/api/v1/webhooks/:id/test", f.handle(func(c echo.Context, acc string) error {
		ep, err := f.endpoint(acc, c.Param("id"))
		if err != nil {
			return err
		}
		d := &fakeDelivery{ID: f.id("wd"), EventID: f.id("msg"), Type: "webhook.test", CreatedAt: now()}
		f.deliveries[ep.ID] = append(f.deliveries[ep.ID], d)
		f.attempt(ep, d)
		return c.NoContent(http.StatusAccepted)
	}))
	e.GET("/api/v1/audit", f.handle(func(c echo.Context, acc string) error {
		limit := 20
		if s := c.QueryParam("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 100 {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad limit", Fields: map[string]string{"limit": "must be a whole number from 1 to 100"}}
			}
			limit = n
		}
		all := f.audit[acc]
		from := 0
		if cur := c.QueryParam("cursor"); cur != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(cur, "o"))
			if err != nil || !strings.HasPrefix(cur, "o") || n < 0 || n > len(all) {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad cursor", Fields: map[string]string{"cursor": "is not a cursor this list gave"}}
			}
			from = n
		}
		// Newest first: the entries are kept oldest first.
		items := []fakeAuditEntry{}
		for i := len(all) - 1 - from; i >= 0 && len(items) < limit; i-- {
			items = append(items, all[i])
		}
		next := ""
		if from+len(items) < len(all) {
			next = "o" + strconv.Itoa(from+len(items))
		}
		return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": next})
	}))
}

// checkWebhookURL refuses what is not an absolute http(s) URL, and hosts
// that name the local machine or a private network (the private-address
// guard of the real API, for literal addresses and localhost only).
func checkWebhookURL(v fnmarket.Validation, raw string) {
	u, err := url.Parse(raw)
	switch {
	case strings.TrimSpace(raw) == "":
		v.Add("url", "is required")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil:
		v.Add("url", "must be an absolute https:// URL")
	case len(raw) > 2000:
		v.Add("url", "must be at most 2000 characters")
	default:
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host == "localhost" || strings.HasSuffix(host, ".localhost") || (ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified())) {
			v.Add("url", "must not point to a private, loopback or link-local address")
		}
	}
}

// attempt delivers d to ep's URL once, as the pretend receiver answers.
func (f *fakeWebhooks) attempt(ep *fakeEndpoint, d *fakeDelivery) {
	code, ok := f.receiver[ep.URL]
	if !ok {
		code = http.StatusOK
	}
	d.Attempts++
	d.LastStatusCode = &code
	d.NextAttemptAt = nil
	if code >= 200 && code < 300 {
		d.Status = "delivered"
	} else {
		d.Status = "failed"
	}
}

func (f *fakeWebhooks) endpoint(acc, id string) (*fakeEndpoint, error) {
	for _, ep := range f.endpoints[acc] {
		if ep.ID == id {
			return ep, nil
		}
	}
	return nil, fnmarket.Errorf(fnmarket.ENOTFOUND, "no webhook endpoint %q among yours", id)
}

func (f *fakeWebhooks) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s_test_%d", prefix, f.seq)
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// log appends an audit entry for the account (under the lock).
func (f *fakeWebhooks) log(c echo.Context, acc, action, target string) {
	f.audit[acc] = append(f.audit[acc], fakeAuditEntry{At: now(), Actor: acc, Action: action, Target: target, IP: c.RealIP()})
}

// session authenticates the browser session (cookie, and the CSRF header on
// changes) as the API does, returning the account.
func (f *fakeWebhooks) session(r *http.Request) (string, error) {
	return sessionOf(f.sessions, r)
}

// sessionOf authenticates the browser session of r with sessions (the
// cookie, and the CSRF header on changes), returning the account.
func sessionOf(sessions *api.Sessions, r *http.Request) (string, error) {
	ck, err := r.Cookie(api.SessionCookie)
	if err != nil {
		return "", fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "log in first")
	}
	ses, err := sessions.Verify(ck.Value)
	if err != nil {
		return "", err
	}
	if r.Method != http.MethodGet && subtle.ConstantTimeCompare([]byte(r.Header.Get(api.CSRFHeader)), []byte(sessions.CSRFToken(ses.ID))) != 1 {
		return "", fnmarket.Errorf(fnmarket.EFORBIDDEN, "missing or wrong CSRF token")
	}
	return ses.AccountID, nil
}

// handle runs fn for the session's account under the lock.
func (f *fakeWebhooks) handle(fn func(c echo.Context, accountID string) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		acc, err := f.session(c.Request())
		if err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return fn(c, acc)
	}
}

// answer makes the pretend receiver at url answer code from now on.
func (f *fakeWebhooks) answer(url string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receiver[url] = code
}

// disable disables the account's endpoint at url, as the worker does after
// days of failures.
func (f *fakeWebhooks) disable(accountID, url, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ep := range f.endpoints[accountID] {
		if ep.URL == url {
			ep.DisabledAt, ep.DisabledReason = now(), reason
		}
	}
}

// record appends audit entries for the account, oldest first.
func (f *fakeWebhooks) record(accountID string, entries ...fakeAuditEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit[accountID] = append(f.audit[accountID], entries...)
}

// endpointsOf reports the URLs of the account's endpoints.
func (f *fakeWebhooks) endpointsOf(accountID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ep := range f.endpoints[accountID] {
		out = append(out, ep.URL)
	}
	return out
}

// thresholdsOf reports a key's alert thresholds as the fake holds them.
func (f *fakeWebhooks) thresholdsOf(keyID string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.thresholds[keyID]
}

// parseThresholds checks alert_thresholds: whole percents from 1 to 100,
// no repeats, at most 10; it answers them sorted. raw is the JSON value.
func parseThresholds(v fnmarket.Validation, raw json.RawMessage) []int {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		v.Add("alert_thresholds", "must be an array of whole percents, e.g. [50, 80, 100]")
		return nil
	}
	if len(items) > 10 {
		v.Add("alert_thresholds", "may list at most 10 thresholds")
		return nil
	}
	out := []int{}
	for i, it := range items {
		var n int
		if err := json.Unmarshal(it, &n); err != nil || n < 1 || n > 100 {
			v.Add(fmt.Sprintf("alert_thresholds[%d]", i), "must be a whole percent from 1 to 100")
			continue
		}
		if slices.Contains(out, n) {
			v.Add(fmt.Sprintf("alert_thresholds[%d]", i), fmt.Sprintf("repeats %d", n))
			continue
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// keysWithAlerts stands in front of the API's own key routes and adds
// alert_thresholds to them: POST /api/v1/keys takes them (checked before
// the key is made; the rest of the body goes to the API) and both it and
// GET /api/v1/keys answer each key's thresholds ([80, 100] unless set).
func (f *fakeWebhooks) keysWithAlerts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		patched := ""
		if m := keyPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPatch {
			patched = m[1]
		} else if r.URL.Path != "/api/v1/keys" || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
			next.ServeHTTP(w, r)
			return
		}
		var set []int
		clear := false
		if patched != "" {
			// An edit: thresholds checked here, the whole body to the API.
			body, _ := io.ReadAll(r.Body)
			var doc map[string]json.RawMessage
			_ = json.Unmarshal(body, &doc) // not an object: the API says so
			if raw, ok := doc["alert_thresholds"]; ok {
				if string(raw) == "null" {
					clear = true
				} else {
					v := fnmarket.Validation{}
					set = parseThresholds(v, raw)
					if err := v.Err(); err != nil {
						fnmarket.WriteProblem(w, err)
						return
					}
				}
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			var doc map[string]json.RawMessage
			if json.Unmarshal(body, &doc) == nil && doc["alert_thresholds"] != nil {
				if _, err := f.session(r); err != nil {
					fnmarket.WriteProblem(w, err)
					return
				}
				v := fnmarket.Validation{}
				set = parseThresholds(v, doc["alert_thresholds"])
				if err := v.Err(); err != nil {
					fnmarket.WriteProblem(w, err)
					return
				}
				delete(doc, "alert_thresholds")
				body, _ = json.Marshal(doc)
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		res := rec.Result()
		out, _ := io.ReadAll(res.Body)
		if res.StatusCode < 300 {
			if clear {
				f.mu.Lock()
				delete(f.thresholds, patched)
				f.mu.Unlock()
			}
			out = f.addThresholds(out, set)
		}
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(out)
	})
}

// addThresholds puts alert_thresholds on a created key (remembering set) or
// on each key of a list.
func (f *fakeWebhooks) addThresholds(doc []byte, set []int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	of := func(k map[string]any) {
		id, _ := k["id"].(string)
		if set != nil {
			f.thresholds[id] = set
		}
		if t, ok := f.thresholds[id]; ok {
			k["alert_thresholds"] = t
		} else {
			k["alert_thresholds"] = defaultThresholds
		}
	}
	var m map[string]any
	if json.Unmarshal(doc, &m) != nil {
		return doc
	}
	if items, ok := m["items"].([]any); ok {
		for _, it := range items {
			if k, ok := it.(map[string]any); ok {
				of(k)
			}
		}
	} else {
		of(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return doc
	}
	return out
}
