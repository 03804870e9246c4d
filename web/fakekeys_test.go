package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
)

// fakePlatformRate is the fake's platform default calls per second per key
// (FNMARKET_RATE_LIMIT_PER_KEY); a key's own limit may not exceed it.
const fakePlatformRate = 100

// fakeMaxGrace is the longest grace the fake's rotate takes (7 days).
const fakeMaxGrace = 7 * 24 * 3600

// fakeKeys stands in front of the API's own key routes (and of
// fakeWebhooks.keysWithAlerts, which adds alert thresholds) and adds the
// rest of "API keys, extended": POST /api/v1/keys takes expires_at,
// allowed_functions and rate_limit_per_second (checked, as problem+json with
// field errors, before the key is made, then taken off the body); it and
// GET /api/v1/keys answer them with previous_expires_at; and POST
// /api/v1/keys/{id}/rotate {grace_seconds} answers the key with a new
// secret and prefix (the same id). It keeps what it adds in memory; the
// rotated secret is not known to the fake gateway (only the portal is
// tested here).
type fakeKeys struct {
	sessions *api.Sessions
	catalog  *catalogstore.Store

	mu   sync.Mutex
	keys map[string]*fakeKeyExtra // by key id
}

type fakeKeyExtra struct {
	ExpiresAt         *string  `json:"expires_at"`
	AllowedFunctions  []string `json:"allowed_functions"`
	RateLimit         *int     `json:"rate_limit_per_second"`
	PreviousExpiresAt *string  `json:"previous_expires_at"`
	prefix            string   // after a rotation
}

func newFakeKeys(s *api.Sessions, c *catalogstore.Store) *fakeKeys {
	return &fakeKeys{sessions: s, catalog: c, keys: map[string]*fakeKeyExtra{}}
}

var (
	rotatePath = regexp.MustCompile(`^/api/v1/keys/([^/]+)/rotate$`)
	keyPath    = regexp.MustCompile(`^/api/v1/keys/([^/]+)$`)
)

func (f *fakeKeys) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := rotatePath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPost {
			f.rotate(w, r, next, m[1])
			return
		}
		if m := keyPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPatch {
			f.patch(w, r, next, m[1])
			return
		}
		if r.URL.Path != "/api/v1/keys" || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
			next.ServeHTTP(w, r)
			return
		}
		var set *fakeKeyExtra
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			var doc map[string]json.RawMessage
			if json.Unmarshal(body, &doc) == nil {
				// Only a browser session is served here; anything else
				// goes to the API as it came.
				if _, err := sessionOf(f.sessions, r); err != nil {
					r.Body = io.NopCloser(bytes.NewReader(body))
					next.ServeHTTP(w, r)
					return
				}
				v := fnmarket.Validation{}
				set = f.check(r, v, doc)
				if err := v.Err(); err != nil {
					fnmarket.WriteProblem(w, err)
					return
				}
				for _, k := range []string{"expires_at", "allowed_functions", "rate_limit_per_second"} {
					delete(doc, k)
				}
				body, _ = json.Marshal(doc)
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		status, header, out := record(next, r)
		if status < 300 {
			out = f.add(out, set)
		}
		reply(w, status, header, out)
	})
}

// check validates the new fields of a create.
func (f *fakeKeys) check(r *http.Request, v fnmarket.Validation, doc map[string]json.RawMessage) *fakeKeyExtra {
	x := &fakeKeyExtra{AllowedFunctions: []string{}}
	if raw, ok := doc["expires_at"]; ok && string(raw) != "null" {
		var s string
		var t time.Time
		err := json.Unmarshal(raw, &s)
		if err == nil {
			t, err = time.Parse(time.RFC3339, s)
		}
		switch {
		case err != nil:
			v.Add("expires_at", "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z")
		case !t.After(time.Now()):
			v.Add("expires_at", "must be in the future")
		default:
			u := t.UTC().Format(time.RFC3339)
			x.ExpiresAt = &u
		}
	}
	if raw, ok := doc["allowed_functions"]; ok && string(raw) != "null" {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			v.Add("allowed_functions", `must be an array of "vendor/name"`)
		} else if len(items) > 100 {
			v.Add("allowed_functions", "may list at most 100 functions")
		} else {
			for i, it := range items {
				var s string
				field := fmt.Sprintf("allowed_functions[%d]", i)
				vendor, name, found := "", "", false
				if json.Unmarshal(it, &s) == nil {
					vendor, name, found = strings.Cut(s, "/")
				}
				switch {
				case !found || vendor == "" || name == "" || strings.Contains(name, "/"):
					v.Add(field, `must be "vendor/name"`)
				case slices.Contains(x.AllowedFunctions, s):
					v.Add(field, "is listed twice")
				default:
					if _, err := f.catalog.Route(r.Context(), vendor, name, 0); err != nil {
						v.Add(field, "is not a published function")
						continue
					}
					x.AllowedFunctions = append(x.AllowedFunctions, s)
				}
			}
		}
	}
	if raw, ok := doc["rate_limit_per_second"]; ok && string(raw) != "null" {
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 1 || n > fakePlatformRate {
			v.Add("rate_limit_per_second", fmt.Sprintf("must be a whole number from 1 to %d (the platform default)", fakePlatformRate))
		} else {
			x.RateLimit = &n
		}
	}
	return x
}

// add puts the new fields on a created key (remembering set) or on each
// key of a list.
func (f *fakeKeys) add(doc []byte, set *fakeKeyExtra) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return eachKey(doc, func(k map[string]any) {
		id, _ := k["id"].(string)
		if set != nil {
			f.keys[id] = set
		}
		f.put(k, id)
	})
}

// put sets a key object's new fields from what the fake holds (under the lock).
func (f *fakeKeys) put(k map[string]any, id string) {
	x := f.keys[id]
	if x == nil {
		x = &fakeKeyExtra{AllowedFunctions: []string{}}
	}
	k["expires_at"], k["allowed_functions"], k["rate_limit_per_second"], k["previous_expires_at"] = x.ExpiresAt, x.AllowedFunctions, x.RateLimit, x.PreviousExpiresAt
	if x.prefix != "" {
		k["prefix"] = x.prefix
	}
}

// patch answers PATCH /api/v1/keys/{id}: the fields this fake keeps are
// checked as at create (a member present and null clears one), the whole
// body goes on to the API, and once it took it the fake keeps what was set.
func (f *fakeKeys) patch(w http.ResponseWriter, r *http.Request, next http.Handler, id string) {
	if _, err := sessionOf(f.sessions, r); err != nil {
		fnmarket.WriteProblem(w, err)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.EINVALID, "the body is not a JSON object"))
		return
	}
	v := fnmarket.Validation{}
	x := f.check(r, v, doc)
	if err := v.Err(); err != nil {
		fnmarket.WriteProblem(w, err)
		return
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	status, header, out := record(next, r)
	if status < 300 {
		f.mu.Lock()
		kept := f.keys[id]
		if kept == nil {
			kept = &fakeKeyExtra{AllowedFunctions: []string{}}
			f.keys[id] = kept
		}
		if _, ok := doc["expires_at"]; ok {
			kept.ExpiresAt = x.ExpiresAt
		}
		if _, ok := doc["allowed_functions"]; ok {
			kept.AllowedFunctions = x.AllowedFunctions
		}
		if _, ok := doc["rate_limit_per_second"]; ok {
			kept.RateLimit = x.RateLimit
		}
		out = eachKey(out, func(k map[string]any) { f.put(k, id) })
		f.mu.Unlock()
	}
	reply(w, status, header, out)
}

// rotate answers POST /api/v1/keys/{id}/rotate: the key as the list shows
// it, with a new secret and prefix and the old secret's end of grace.
func (f *fakeKeys) rotate(w http.ResponseWriter, r *http.Request, next http.Handler, id string) {
	if _, err := sessionOf(f.sessions, r); err != nil {
		fnmarket.WriteProblem(w, err)
		return
	}
	body, _ := io.ReadAll(r.Body)
	// The list (through the API and the alert thresholds' fake) finds the
	// key among the caller's.
	get := httptest.NewRequest(http.MethodGet, "/api/v1/keys", nil)
	get.Header = r.Header.Clone()
	status, header, out := record(next, get)
	if status != http.StatusOK {
		reply(w, status, header, out)
		return
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	_ = json.Unmarshal(f.add(out, nil), &list)
	var key map[string]any
	for _, k := range list.Items {
		if k["id"] == id {
			key = k
		}
	}
	if key == nil {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.ENOTFOUND, "no key %q among yours", id))
		return
	}
	if key["revoked_at"] != nil {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.ECONFLICT, "key %s is revoked", id))
		return
	}
	var req struct {
		Grace *json.RawMessage `json:"grace_seconds"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.EINVALID, "the body must be a JSON object {grace_seconds}"))
		return
	}
	grace := 0
	if req.Grace != nil {
		if err := json.Unmarshal(*req.Grace, &grace); err != nil || grace < 0 || grace > fakeMaxGrace {
			fnmarket.WriteProblem(w, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad grace_seconds",
				Fields: map[string]string{"grace_seconds": "must be a whole number of seconds from 0 to " + strconv.Itoa(fakeMaxGrace) + " (7 days)"}})
			return
		}
	}
	secret := accounts.KeyPrefix + fnmarket.RandomToken(24)
	f.mu.Lock()
	x := f.keys[id]
	if x == nil {
		x = &fakeKeyExtra{AllowedFunctions: []string{}}
		f.keys[id] = x
	}
	x.prefix = secret[:len(accounts.KeyPrefix)+8]
	x.PreviousExpiresAt = nil
	if grace > 0 {
		end := time.Now().UTC().Add(time.Duration(grace) * time.Second).Format(time.RFC3339)
		x.PreviousExpiresAt = &end
	}
	f.put(key, id)
	f.mu.Unlock()
	key["key"] = secret
	delete(key, "spend_this_month")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(key)
}

// expire sets a key's expiry as the fake holds it (a time in the past
// makes it expired, which create refuses).
func (f *fakeKeys) expire(id string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x := f.keys[id]
	if x == nil {
		x = &fakeKeyExtra{AllowedFunctions: []string{}}
		f.keys[id] = x
	}
	s := at.UTC().Format(time.RFC3339)
	x.ExpiresAt = &s
}

// extraOf reports what the fake holds for a key.
func (f *fakeKeys) extraOf(id string) fakeKeyExtra {
	f.mu.Lock()
	defer f.mu.Unlock()
	if x := f.keys[id]; x != nil {
		return *x
	}
	return fakeKeyExtra{}
}

// record serves r with next and returns the answer.
func record(next http.Handler, r *http.Request) (int, http.Header, []byte) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	res := rec.Result()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, out
}

// reply writes a recorded answer with out as its body.
func reply(w http.ResponseWriter, status int, header http.Header, out []byte) {
	for k, vs := range header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// eachKey runs of on a key object or on each key of a list, and returns the
// document re-encoded (as it was if it is not JSON).
func eachKey(doc []byte, of func(map[string]any)) []byte {
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
