package webhooks

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// SecretPrefix starts every endpoint secret, as the Standard Webhooks
// specification serialises symmetric secrets.
const SecretPrefix = "whsec_"

// secretBytes is the length of a new endpoint secret: 32 random bytes (the
// specification asks for 24 to 64).
const secretBytes = 32

// Signature header names (Standard Webhooks).
const (
	HeaderID        = standardwebhooks.HeaderWebhookID
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp
	HeaderSignature = standardwebhooks.HeaderWebhookSignature
)

// NewSecret returns a new endpoint secret: "whsec_" and the base64 of 32
// random bytes.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// Sign returns the webhook-signature header value of one attempt: "v1," and
// the base64 HMAC-SHA256 of "id.timestamp.body" keyed by the secret's bytes
// (the base64 after "whsec_"). It signs with the specification's own Go
// library; TestSignSpecVector checks it against the published vector and an
// independent verifier.
func Sign(secret, id string, at time.Time, body []byte) (string, error) {
	if !strings.HasPrefix(secret, SecretPrefix) {
		return "", fmt.Errorf("webhook secret without the %s prefix", SecretPrefix)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return "", err
	}
	return wh.Sign(id, at, body)
}
