package fnmarket

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashAPIKey returns the stored form of an API key: the hex SHA-256 of the
// whole key. Keys carry 192 random bits, so a slow hash would add nothing; the
// gateway hashes each presented key and looks the hash up.
func HashAPIKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}
