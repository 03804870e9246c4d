package fnmarket

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random identifier such as "fn_k3j5...": a type prefix and
// 80 random bits, URL-safe and lower-case.
func NewID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return prefix + "_" + strings.ToLower(idEncoding.EncodeToString(b))
}

// RandomToken returns n random bytes encoded in the same alphabet.
func RandomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}
