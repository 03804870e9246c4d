package accounts

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fnmarket/fnmarket"
)

// DefaultAlertThresholds are the percents of a cap that raise
// usage.threshold_reached when a key or account sets none.
var DefaultAlertThresholds = []int{80, 100}

// MaxAlertThresholds is how many thresholds one cap may have.
const MaxAlertThresholds = 5

// CheckAlertThresholds accepts nil (the default) or 1 to MaxAlertThresholds
// whole percents in 1..100, ascending and unique.
func CheckAlertThresholds(t []int) error {
	if t == nil {
		return nil
	}
	bad := func(msg string) error {
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the alert thresholds are not valid", Fields: map[string]string{"alert_thresholds": msg}}
	}
	if len(t) == 0 || len(t) > MaxAlertThresholds {
		return bad(fmt.Sprintf("must list 1 to %d percents", MaxAlertThresholds))
	}
	for i, p := range t {
		if p < 1 || p > 100 {
			return bad("each must be a whole percent from 1 to 100")
		}
		if i > 0 && p <= t[i-1] {
			return bad("must be in ascending order, each once")
		}
	}
	return nil
}

// ParseAlertThresholds reads a stored alert_thresholds column; NULL or
// unreadable text is the default.
func ParseAlertThresholds(s *string) []int {
	if s != nil {
		var t []int
		if json.Unmarshal([]byte(*s), &t) == nil && len(t) > 0 && CheckAlertThresholds(t) == nil {
			return t
		}
	}
	return slices.Clone(DefaultAlertThresholds)
}

func formatAlertThresholds(t []int) *string {
	if t == nil {
		return nil
	}
	b, _ := json.Marshal(t)
	s := string(b)
	return &s
}
