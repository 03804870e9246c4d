package billing

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestPlatformFeeRoundedOncePerVendorMonth bills many small invoices: the
// fee is 20% of the vendor's month gross rounded once, not rounded per
// invoice (a 0.02 invoice's 0.004 fee rounded to nothing), both on the
// statement and in what the shares pay out once the invoices are paid.
func TestPlatformFeeRoundedOncePerVendorMonth(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil) // default rate 0.20
		acme := f.vendor("acme")
		fn := f.function(acme, "tiny", usd("0.01", "0", 0))
		other := f.vendor("other")
		fnO := f.function(other, "big", usd("1", "0", 0))
		var consumers []string
		for i := range 15 {
			c := f.consumer(fmt.Sprintf("c%d", i))
			consumers = append(consumers, c)
			calls := int64(2) // 0.02
			if i >= 10 {
				calls = 3 // 0.03
			}
			f.usage(jan.Add(time.Hour), c, fn, 1, calls, 0)
		}
		f.usage(jan.Add(time.Hour), consumers[0], fnO, 1, 3, 0) // another vendor on the same invoice
		f.bill(jan, Options{})

		statement := func(vendor string) Statement {
			t.Helper()
			sts, err := f.biller.Statements(f.ctx, vendor)
			if err != nil || len(sts) != 1 {
				t.Fatalf("statements = %+v, %v", sts, err)
			}
			return sts[0]
		}
		// 10 x 0.02 + 5 x 0.03 = 0.35 gross; 0.35 x 0.20 = 0.07 (per invoice
		// it was 10 x 0.00 + 5 x 0.01 = 0.05).
		if st := statement(acme.ID); st.Gross.String() != "0.35" || st.PlatformFee.String() != "0.07" || st.Net.String() != "0.28" {
			t.Errorf("statement gross %s fee %s net %s, want 0.35, 0.07, 0.28", st.Gross, st.PlatformFee, st.Net)
		}
		if st := statement(other.ID); st.Gross.String() != "3.00" || st.PlatformFee.String() != "0.60" || st.Net.String() != "2.40" {
			t.Errorf("other vendor's statement %+v", st)
		}

		// One 0.02 invoice is voided: 0.33 x 0.20 = 0.066 -> 0.07.
		if err := f.biller.Transition(f.ctx, f.only(consumers[1], jan).ID, StatusVoid, ""); err != nil {
			t.Fatal(err)
		}
		if st := statement(acme.ID); st.Gross.String() != "0.33" || st.PlatformFee.String() != "0.07" || st.Net.String() != "0.26" {
			t.Errorf("after a void: gross %s fee %s net %s, want 0.33, 0.07, 0.26", st.Gross, st.PlatformFee, st.Net)
		}
		// Paid one at a time, the fees fixed so far are always the month's
		// fee on what has been paid, and at the end they add up to the
		// statement's.
		paidGross := decimal.Zero
		for i, c := range consumers {
			if i == 1 {
				continue
			}
			inv := f.only(c, jan)
			if err := f.biller.Transition(f.ctx, inv.ID, StatusPaid, "test"); err != nil {
				t.Fatal(err)
			}
			for _, l := range inv.Lines {
				if l.VendorID == acme.ID {
					paidGross = paidGross.Add(l.Amount.Decimal)
				}
			}
			gross, fee, net := f.releasedShares(acme.ID)
			if !gross.Equal(paidGross) || !fee.Equal(RoundCents(paidGross.Mul(dec("0.20")))) || !net.Equal(gross.Sub(fee)) {
				t.Fatalf("after %d paid: released gross %s fee %s net %s, want fee = round(%s x 0.20)", i+1, gross, fee, net, paidGross)
			}
		}
		st := statement(acme.ID)
		if gross, fee, net := f.releasedShares(acme.ID); !gross.Equal(st.Gross.Decimal) || !fee.Equal(st.PlatformFee.Decimal) || !net.Equal(st.Net.Decimal) {
			t.Errorf("paid out gross %s fee %s net %s; statement %s %s %s", gross, fee, net, st.Gross, st.PlatformFee, st.Net)
		}
		if gross, fee, _ := f.releasedShares(other.ID); gross.String() != "3" || fee.String() != "0.6" {
			t.Errorf("other vendor's released shares: gross %s fee %s", gross, fee)
		}
	})
}

// releasedShares sums the vendor's shares whose fee is fixed (their invoices
// were paid).
func (f *fixture) releasedShares(vendor string) (gross, fee, net decimal.Decimal) {
	f.t.Helper()
	var rows []shareRow
	if err := f.db.Where("vendor_id = ? AND payout_status IN ?", vendor, []string{PayoutPending, PayoutTransferred, PayoutNothingDue}).Find(&rows).Error; err != nil {
		f.t.Fatal(err)
	}
	for _, r := range rows {
		gross = gross.Add(dec(r.Gross))
		fee = fee.Add(dec(r.PlatformFee))
		net = net.Add(dec(r.Net))
		if net := dec(r.Net); net.IsPositive() != (r.PayoutStatus != PayoutNothingDue) || (Money{net}).Cents() != r.NetCents {
			f.t.Errorf("share %+v: payout status or cents disagree with its net", r)
		}
	}
	return gross, fee, net
}
