package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// postFrom sends a JSON POST as if from client address xff (sent in
// X-Forwarded-For; "" sends none) and answers the status, the problem code
// and Retry-After.
func postFrom(t *testing.T, url, path, xff string, body any) (int, string, string) {
	t.Helper()
	buf, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+path, bytes.NewReader(buf))
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(raw, &p)
	return res.StatusCode, p.Code, res.Header.Get("Retry-After")
}

func login(email, password string) map[string]any {
	return map[string]any{"email": email, "password": password}
}

func loopback() []*net.IPNet {
	_, n, _ := net.ParseCIDR("127.0.0.0/8")
	_, n6, _ := net.ParseCIDR("::1/128")
	return []*net.IPNet{n, n6}
}

// TestConcurrentGuessesCannotRaceTheThrottle sends 100 logins for one account
// from one address at once, 99 wrong and 1 right: at most ten wrong passwords
// are checked, the rest get 429, whatever the interleaving.
func TestConcurrentGuessesCannotRaceTheThrottle(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := testenv.Redis(t, b)
			h := newHarness(t, b, func(d *api.Deps) {
				d.LoginThrottle = redisx.NewLoginThrottle(rdb, prefix, 10, time.Minute)
				d.Auth.HashWait = time.Minute
			})
			h.signup("raced@example.com")
			statuses := make([]int, 100)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					password := fmt.Sprintf("wrong guess %d", i)
					if i == 50 {
						password = "correct horse battery"
					}
					<-start
					statuses[i], _, _ = postFrom(t, h.url, "/api/v1/auth/login", "", login("raced@example.com", password))
				}()
			}
			close(start)
			wg.Wait()
			count := map[int]int{}
			for _, s := range statuses {
				count[s]++
			}
			if count[401] > 10 || count[429] < 89 || count[401]+count[200]+count[429] != 100 {
				t.Errorf("answers %v: want at most 10 wrong passwords checked (401) and the rest 429", count)
			}
		})
	}
}

// TestLockoutIsPerAccountAndAddress: wrong passwords from one address lock
// that address out of the account, not the owner at another address, even
// after several addresses have each used up their guesses (the account is
// then slowed down, not locked). Without a trusted proxy, X-Forwarded-For is
// ignored, so a guesser cannot pose as fresh addresses.
func TestLockoutIsPerAccountAndAddress(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := testenv.Redis(t, b)
			throttled := func(trusted []*net.IPNet) func(*api.Deps) {
				return func(d *api.Deps) {
					d.LoginThrottle = redisx.NewLoginThrottle(rdb, prefix+fmt.Sprint(len(trusted))+":", 10, time.Minute)
					d.TrustedProxies = trusted
					d.Auth.SlowdownStep, d.Auth.SlowdownMax = time.Millisecond, 5*time.Millisecond
				}
			}
			h := newHarness(t, b, throttled(loopback()))
			h.signup("owner@example.com")
			for _, attacker := range []string{"203.0.113.1", "203.0.113.2", "2001:db8::1"} {
				for i := 0; i < 11; i++ {
					postFrom(t, h.url, "/api/v1/auth/login", attacker, login("owner@example.com", fmt.Sprintf("guess %d", i)))
				}
				if st, code, retry := postFrom(t, h.url, "/api/v1/auth/login", attacker, login("owner@example.com", "correct horse battery")); st != 429 || code != "rate_limited" || retry == "" {
					t.Errorf("%s after 11 wrong passwords: %d %s (Retry-After %q), want 429 rate_limited", attacker, st, code, retry)
				}
			}
			// Another address in the attacker's IPv6 /64 is the same client.
			if st, _, _ := postFrom(t, h.url, "/api/v1/auth/login", "2001:db8::2", login("owner@example.com", "correct horse battery")); st != 429 {
				t.Errorf("same IPv6 /64: %d, want 429", st)
			}
			for _, owner := range []string{"198.51.100.7", "2001:db8:1::7"} {
				if st, code, _ := postFrom(t, h.url, "/api/v1/auth/login", owner, login("owner@example.com", "correct horse battery")); st != 200 {
					t.Errorf("the owner from %s: %d %s, want 200", owner, st, code)
				}
			}

			// No trusted proxy: every request is from 127.0.0.1, whatever
			// X-Forwarded-For claims.
			d := newHarness(t, b, throttled(nil))
			d.signup("owner@example.com")
			for i := 0; i < 10; i++ {
				postFrom(t, d.url, "/api/v1/auth/login", fmt.Sprintf("203.0.113.%d", i), login("owner@example.com", "guess"))
			}
			if st, _, _ := postFrom(t, d.url, "/api/v1/auth/login", "198.51.100.99", login("owner@example.com", "correct horse battery")); st != 429 {
				t.Errorf("a spoofed X-Forwarded-For without a trusted proxy: %d, want 429", st)
			}
		})
	}
}

// TestSignupsAndLoginsAreLimitedPerAddress: each address gets its budget of
// sign-ups and login attempts per minute, then 429 with Retry-After.
func TestSignupsAndLoginsAreLimitedPerAddress(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := testenv.Redis(t, b)
			h := newHarness(t, b, func(d *api.Deps) {
				d.AuthRate = redisx.NewClientRate(rdb, prefix, 3)
				d.TrustedProxies = loopback()
			})
			signup := func(client, email string) (int, string, string) {
				return postFrom(t, h.url, "/api/v1/auth/signup", client, map[string]any{"email": email, "password": "correct horse battery", "name": "N"})
			}
			for i := 0; i < 2; i++ {
				if st, code, _ := signup("203.0.113.5", fmt.Sprintf("a%d@example.com", i)); st != 201 {
					t.Fatalf("sign-up %d: %d %s", i, st, code)
				}
			}
			if st, _, _ := postFrom(t, h.url, "/api/v1/auth/login", "203.0.113.5", login("a0@example.com", "correct horse battery")); st != 200 {
				t.Fatalf("login within the budget: %d", st)
			}
			for _, r := range []func() (int, string, string){
				func() (int, string, string) { return signup("203.0.113.5", "a9@example.com") },
				func() (int, string, string) {
					return postFrom(t, h.url, "/api/v1/auth/login", "203.0.113.5", login("a0@example.com", "correct horse battery"))
				},
			} {
				if st, code, retry := r(); st != 429 || code != "rate_limited" || retry == "" {
					t.Errorf("over the budget: %d %s (Retry-After %q), want 429 rate_limited", st, code, retry)
				}
			}
			if st, code, _ := signup("198.51.100.1", "b@example.com"); st != 201 {
				t.Errorf("another address: %d %s, want 201", st, code)
			}
		})
	}
}

// TestPasswordHashingIsBounded runs more sign-ups at once than there are
// hashing slots, with almost no time to wait for one: those that find no
// slot get 503 with Retry-After, the others succeed, none fails otherwise.
func TestPasswordHashingIsBounded(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t, testenv.Backends()[0])
	srv := api.NewServer(api.Deps{
		Accounts: accounts.NewStore(db, nil, bcrypt.DefaultCost),
		Catalog:  catalogstore.NewStore(db, nil),
		Sessions: api.NewSessions([]byte(testSecret), time.Hour, nil),
		Auth:     api.AuthLimits{HashSlots: 1, HashWait: time.Millisecond},
	})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	type answer struct {
		status      int
		code, retry string
	}
	answers := make([]answer, 8)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, code, retry := postFrom(t, ts.URL, "/api/v1/auth/signup", "", map[string]any{"email": fmt.Sprintf("h%d@example.com", i), "password": "correct horse battery", "name": "H"})
			answers[i] = answer{st, code, retry}
		}()
	}
	close(start)
	wg.Wait()
	created, refused := 0, 0
	for _, a := range answers {
		switch {
		case a.status == 201:
			created++
		case a.status == 503 && a.code == "unavailable" && a.retry != "":
			refused++
		default:
			t.Errorf("sign-up answered %+v, want 201 or 503 unavailable with Retry-After", a)
		}
	}
	if created == 0 || refused == 0 {
		t.Errorf("%d created, %d refused: want both with one hashing slot and eight sign-ups at once", created, refused)
	}
}
