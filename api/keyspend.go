package api

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
)

// KeySpends reports what each of a consumer's API keys spent in the UTC
// month of at: key id -> currency -> exact amount. Keys that spent nothing
// may be missing.
type KeySpends interface {
	KeySpendThisMonth(ctx context.Context, consumerID string, at time.Time) (map[string]map[string]decimal.Decimal, error)
}

var _ KeySpends = (*UsageReport)(nil)

// KeySpendThisMonth prices the consumer's month as Usage does (each
// function's month through catalog.PriceMonth, from the rolled-up usage),
// with each hour's calls kept apart per key, so the keys' amounts add up
// exactly to the month's usage rows. Rows the gateway priced carry each
// key's own calls' X-Cost; for rows counted before migration 00009, where the
// meter kept no order between keys within an hour, which key took the
// cheaper calls follows key id order.
func (u *UsageReport) KeySpendThisMonth(ctx context.Context, consumerID string, at time.Time) (map[string]map[string]decimal.Decimal, error) {
	from := monthStart(at)
	periods, err := u.hours.Hours(ctx, billing.UsageFilter{ConsumerID: consumerID, From: from, To: from.AddDate(0, 1, 0), PerKey: true})
	if err != nil {
		return nil, err
	}
	byFn := map[string][]billing.UsageHour{}
	for _, p := range periods {
		byFn[p.FunctionID] = append(byFn[p.FunctionID], p)
	}
	ids := make([]string, 0, len(byFn))
	for id := range byFn {
		ids = append(ids, id)
	}
	fns, err := u.catalog.FunctionsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]decimal.Decimal{}
	for id, ps := range byFn {
		fn, ok := fns[id]
		if !ok {
			return nil, fmt.Errorf("usage names function %s, which the catalog does not have", id)
		}
		// Sorted as PriceMonth takes steps (hour, version), keys in id
		// order within them, so its stable sort keeps this order and the
		// i-th priced step is the i-th period's.
		slices.SortStableFunc(ps, func(a, b billing.UsageHour) int {
			return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Version, b.Version), cmp.Compare(a.KeyID, b.KeyID))
		})
		steps := make([]catalog.UsageStep, len(ps))
		for i, p := range ps {
			steps[i] = p.Step()
		}
		pricing := versionPricing(fn)
		priced, err := catalog.PriceMonth(pricing, steps)
		if err != nil {
			return nil, fmt.Errorf("price usage of %s/%s by %s: %w", fn.VendorSlug, fn.Name, consumerID, err)
		}
		for i, s := range priced {
			k, cur := ps[i].KeyID, pricing[s.Version].CurrencyCode()
			if out[k] == nil {
				out[k] = map[string]decimal.Decimal{}
			}
			out[k][cur] = out[k][cur].Add(s.Cost)
		}
	}
	return out, nil
}

// keySpends is Deps.KeySpends, or else the usage reader when it can report
// spend per key (UsageReport can); nil when neither is wired, and key items
// then carry no spend_this_month.
func (s *Server) keySpends() KeySpends {
	if s.KeySpends != nil {
		return s.KeySpends
	}
	if ks, ok := s.Usage.(KeySpends); ok {
		return ks
	}
	return nil
}
