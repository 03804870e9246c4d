package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestSessionOfAMissingAccount sends a validly signed token whose account
// does not exist: every route, reads and writes alike, answers 401.
func TestSessionOfAMissingAccount(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	tok, _, err := api.NewSessions([]byte(testSecret), time.Hour, h.clock).Issue("acc_gone", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/me", nil},
		{"GET", "/api/v1/keys", nil},
		{"POST", "/api/v1/keys", map[string]any{"name": "ci"}},
		{"POST", "/api/v1/vendor", map[string]any{"slug": "ghost", "display_name": "Ghost"}},
		{"POST", "/api/v1/functions", validFunction("scan")},
	} {
		a := h.do(r.method, r.path, tok, r.body)
		if a.status != 401 || a.str("code") != "unauthenticated" {
			t.Errorf("%s %s: %d %s, want 401 unauthenticated", r.method, r.path, a.status, a.raw)
		}
	}
}

// browser sends requests as the portal's script does: the session and CSRF
// cookies, and the CSRF header on state-changing requests.
func browserDo(t *testing.T, url, method, path string, cookies map[string]string, csrfHeader, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	if csrfHeader != "" {
		req.Header.Set(api.CSRFHeader, csrfHeader)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func loginCookies(t *testing.T, url, email, password string) map[string]string {
	t.Helper()
	res, err := http.Post(url+"/api/v1/auth/login", "application/json", strings.NewReader(`{"email":"`+email+`","password":"`+password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("login: %d", res.StatusCode)
	}
	out := map[string]string{}
	for _, c := range res.Cookies() {
		out[c.Name] = c.Value
	}
	if out[api.SessionCookie] == "" || out[api.CSRFCookie] == "" {
		t.Fatalf("login set cookies %v", out)
	}
	return out
}

// TestCSRFTokenIsBoundToTheSession plants a CSRF cookie and header of the
// attacker's choosing next to a real session cookie (a sibling subdomain can
// set cookies): the request is refused. Another session's CSRF token is
// refused too; the session's own passes.
func TestCSRFTokenIsBoundToTheSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	h.signup("victim@example.com")
	h.signup("mallory@example.com")
	victim := loginCookies(t, h.url, "victim@example.com", "correct horse battery")
	mallory := loginCookies(t, h.url, "mallory@example.com", "correct horse battery")
	key := `{"name":"ci"}`

	planted := map[string]string{api.SessionCookie: victim[api.SessionCookie], api.CSRFCookie: "planted-by-attacker"}
	if got := browserDo(t, h.url, "POST", "/api/v1/keys", planted, "planted-by-attacker", key); got != 403 {
		t.Errorf("planted CSRF cookie and header: %d, want 403", got)
	}
	other := map[string]string{api.SessionCookie: victim[api.SessionCookie], api.CSRFCookie: mallory[api.CSRFCookie]}
	if got := browserDo(t, h.url, "POST", "/api/v1/keys", other, mallory[api.CSRFCookie], key); got != 403 {
		t.Errorf("another session's CSRF token: %d, want 403", got)
	}
	if got := browserDo(t, h.url, "POST", "/api/v1/keys", victim, "", key); got != 403 {
		t.Errorf("no CSRF header: %d, want 403", got)
	}
	if got := browserDo(t, h.url, "POST", "/api/v1/keys", victim, victim[api.CSRFCookie], key); got != 201 {
		t.Errorf("the session's own CSRF token: %d, want 201", got)
	}
}

// TestLogoutAndPasswordChangeEndSessionsOnEveryReplica runs two API
// instances on one database and one Redis: a session logged out on one is
// refused by the other, and a password change on one ends every earlier
// session on both.
func TestLogoutAndPasswordChangeEndSessionsOnEveryReplica(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			db := testenv.DB(t, b)
			rdb, prefix := testenv.Redis(t, b)
			clock := fnmarket.NewTestClock(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
			replica := func() *harness {
				srv := api.NewServer(api.Deps{
					Accounts:    accounts.NewStore(db, clock, bcrypt.MinCost),
					Catalog:     catalogstore.NewStore(db, clock),
					Sessions:    api.NewSessions([]byte(testSecret), time.Hour, clock),
					Revocations: redisx.NewSessionRevocations(rdb, prefix),
					Clock:       clock,
				})
				ts := httptest.NewServer(srv)
				t.Cleanup(ts.Close)
				return &harness{t: t, url: ts.URL, srv: srv, clock: clock}
			}
			one, two := replica(), replica()
			login := func(h *harness, password string) string {
				return h.must(200, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": password})).str("token")
			}

			one.signup("ada@example.com")
			a, b := login(one, "correct horse battery"), login(two, "correct horse battery")
			two.must(200, two.do("GET", "/api/v1/me", a, nil))
			one.must(204, one.do("POST", "/api/v1/auth/logout", a, nil))
			for name, h := range map[string]*harness{"same replica": one, "other replica": two} {
				if got := h.do("GET", "/api/v1/me", a, nil); got.status != 401 {
					t.Errorf("%s: logged-out token answered %d, want 401", name, got.status)
				}
			}
			one.must(200, one.do("GET", "/api/v1/me", b, nil))
			// Logging out twice, or with no session at all, is no error.
			one.must(204, one.do("POST", "/api/v1/auth/logout", a, nil))
			one.must(204, one.do("POST", "/api/v1/auth/logout", "", nil))

			c := login(one, "correct horse battery")
			wrong := one.do("POST", "/api/v1/auth/password", c, map[string]any{"current_password": "not my password", "new_password": "a new long passphrase"})
			if wrong.status != 400 || wrong.body["errors"] == nil {
				t.Errorf("wrong current password: %d %s, want 400 naming current_password", wrong.status, wrong.raw)
			}
			changed := two.must(200, two.do("POST", "/api/v1/auth/password", b, map[string]any{"current_password": "correct horse battery", "new_password": "a new long passphrase"}))
			for _, h := range []*harness{one, two} {
				for name, tok := range map[string]string{"the changing session": b, "another session": c} {
					if got := h.do("GET", "/api/v1/me", tok, nil); got.status != 401 {
						t.Errorf("%s after a password change: %d, want 401", name, got.status)
					}
				}
				h.must(200, h.do("GET", "/api/v1/me", changed.str("token"), nil))
			}
			one.must(401, one.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": "correct horse battery"}))
			login(two, "a new long passphrase")
		})
	}
}
