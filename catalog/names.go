package catalog

import (
	"fmt"
	"regexp"

	"github.com/fnmarket/fnmarket"
)

// namePattern is a vendor slug or function name: lower-case letters, digits
// and single hyphens between them, so it starts and ends with a letter or
// digit and never holds "--".
var namePattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Slug lengths, in characters.
const (
	MinSlugLen, MaxSlugLen                 = 3, 40
	MinFunctionNameLen, MaxFunctionNameLen = 2, 60
)

// ValidateName records a problem under field in v unless s is a slug of
// min to max characters (see namePattern).
func ValidateName(v fnmarket.Validation, field, s string, min, max int) {
	if len(s) < min || len(s) > max || !namePattern.MatchString(s) {
		v.Add(field, fmt.Sprintf("must be %d to %d characters of a-z and 0-9, with single hyphens between them", min, max))
	}
}

// Currencies are the ISO 4217 currencies a price may be set in, with their
// minor-unit exponent. Billing rounds every amount to two decimal places and
// sends whole cents to Stripe, so only two-decimal currencies Stripe supports
// are listed; a zero-decimal one such as JPY would be billed 100 times over.
var Currencies = map[string]int{
	"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "NZD": 2,
	"CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "SGD": 2,
}
