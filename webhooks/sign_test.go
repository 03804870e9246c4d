package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/webhooks"
)

// verify is a receiver's check written from the Standard Webhooks
// specification alone (not with the library the sender uses): the secret's
// bytes are the base64 after "whsec_"; the signed content is
// "id.timestamp.body"; webhook-signature is a space-separated list of
// "v1,<base64 HMAC-SHA256>", one of which must match; the timestamp must be
// within 5 minutes of now.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return errors.New("missing or malformed webhook-id/webhook-timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp outside the tolerance")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// TestSignSpecVector signs the Standard Webhooks libraries' published test
// vector (the same in every language's test suite) and checks the result
// with the independent verifier; a changed byte fails verification.
func TestSignSpecVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	at := time.Unix(1614265330, 0)
	got, err := webhooks.Sign(secret, id, at, []byte(body))
	if err != nil || got != want {
		t.Fatalf("Sign = %q, %v; want %q", got, err, want)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm90IGl0 "+got) // a rotated-out signature first
	if err := verify(secret, h, []byte(body), at.Add(time.Minute)); err != nil {
		t.Fatalf("independent verifier: %v", err)
	}
	if err := verify(secret, h, []byte(`{"test": 2432232315}`), at); err == nil {
		t.Fatal("a changed body verified")
	}
	if err := verify(secret, h, []byte(body), at.Add(6*time.Minute)); err == nil {
		t.Fatal("an old timestamp verified")
	}
	if _, err := webhooks.Sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, at, []byte(body)); err == nil {
		t.Fatal("a secret without whsec_ signed")
	}
}

// TestNewSecret: whsec_ and the base64 of 32 random bytes, never twice alike.
func TestNewSecret(t *testing.T) {
	a, b := webhooks.NewSecret(), webhooks.NewSecret()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsec_"))
	if !strings.HasPrefix(a, "whsec_") || err != nil || len(raw) != 32 || a == b {
		t.Fatalf("secrets %q, %q (%v)", a, b, err)
	}
}
