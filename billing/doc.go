// Package billing turns rolled-up usage into money: it prices each consumer's
// month with catalog.PriceMonth (the rule the gateway's spend caps apply per
// call with catalog.Pricing.CallCost),
// issues invoices, keeps their lifecycle, computes vendor statements, and syncs
// invoices and payouts with Stripe.
//
// # What a line counts
//
// An invoice has one line per function version used in the month. A line's
// calls are the calls the meter counted as chargeable (usage_hourly's
// billable_calls; calls the platform does not charge for never reach an
// invoice). free_calls are the calls the monthly free tier covers,
// billable_calls = calls - free_calls are the calls charged at the per-call
// price, and compute_ms is charged at per_compute_ms whether or not the call
// was free (the free tier waives the per-call price only).
//
// # Free tier and graduated tiers across versions
//
// The free tier counts per consumer, per function, per UTC calendar month, not
// per version, and one rule (catalog.PriceMonth; catalog.Pricing.CallCost for
// one call) decides it for invoices, the upcoming invoice, adjustments, usage
// rows and the spend cap's per-call cost: free calls and tier slots go to calls
// in the order they were admitted. A call at position n (n calls of the
// function already billed this month) is free when n is under its own
// version's free_calls_per_month, and otherwise pays its version's price at
// tier slot n - free_calls_per_month; calls that never reached the function
// take no position.
//
// The gateway applies that rule as it admits each call (CallCost at the
// call's position, answered as X-Cost), and the meter writes what it charged
// on each usage row (migration 00009): free_calls, the exact cost_pico of the
// row's calls (1e-12 of the currency) and credit_pico, the part paid from
// prepaid credit. Billing reads usage_hourly through UsageTable, summed over
// keys per hour and version, and takes those prices as they are
// (catalog.UsageStep.Priced): a line's exact amount is the sum of its calls'
// X-Cost, whatever order versions were called in within an hour. Rows counted
// before 00009 carry no prices (cost_pico is NULL); they are priced by the
// rule, hour by hour, and since the hourly counters do not keep the order of
// calls within an hour, one such hour's versions are taken in ascending
// version order (the tie-break, which applies to those rows only). Priced and
// unpriced rows of one hour are kept apart, and positions count across both.
// The API's usage rows (api.UsageReport) read the same UsageTable. A line sums
// its version's hours. The result depends only on the recorded usage, so
// re-running billing gives the same lines.
//
// # Rounding
//
// Each line's exact amount (a decimal, never a float) is rounded once, to
// cents, half-even ("banker's rounding": 0.125 -> 0.12, 0.135 -> 0.14), which
// does not drift upward over many lines. The invoice subtotal is the sum of
// the rounded lines that charge (usage, adjustment, carried_forward), the
// total is the subtotal less the credit applied (no tax or discount yet), and
// total_cents is total in whole cents. Every currency is kept to two decimal
// places; zero-decimal currencies such as JPY are not supported.
//
// # Prepaid credit
//
// Credit is spent by the gateway as it admits calls (usage_hourly.credit_pico),
// so it is money already collected. An invoice shows it as its own line (kind
// "credit", no function, a negative amount): minus the credit the consumer's
// usage of the month consumed in the invoice's currency, summed exactly and
// rounded half-even to cents once per month, but never more than the month's
// lines charge (credit never takes a month below zero), and exactly what they
// charge when the credit paid for every call of the month: lines are rounded
// one by one, so two calls of 0.004 paid by credit would otherwise show two
// 0.00 lines and a -0.01 credit line, and two of 0.015 two 0.02 lines and
// -0.03 of credit, a cent charged for calls the credit paid
// (monthCharges.creditCents; TestCreditPaidMonthNetsToZero).
// Invoice.CreditApplied is minus the sum of the credit lines and total =
// subtotal - credit applied; the upcoming preview shows the same. Credit
// consumed by late usage of a closed month is applied like the usage: the
// next invoice carries a credit line for that month (period_start of it) of
// the month's credit, by the same rule, minus what earlier invoices applied.
// Vendors' shares are of the gross, the lines that charge: credit lines do not
// reduce them. An invoice that credit covers entirely (total zero) is paid as
// it is issued. Stripe gets the credit line as
// a negative invoice item, so it charges the total and never the credited
// part.
//
// # Currencies
//
// A line's currency is its version's pricing currency (USD when unset). A
// consumer gets one invoice per month per currency used; the unique key is
// (consumer_id, period_start, currency). Upcoming returns one preview per
// currency for the same reason.
//
// # Periods, drafts and idempotency
//
// BillPeriod bills one UTC calendar month. A month not yet over is refused
// unless ThroughNow is set, which creates or refreshes DRAFT invoices from the
// usage rolled up so far. Once the month is over, BillPeriod turns drafts into
// open (finalized) invoices and creates missing ones; invoices already open,
// paid or void are never touched again, so re-running creates nothing twice
// and changes nothing. After every consumer's invoice for the month is issued,
// the month is recorded as closed (billing_periods).
//
// # Late usage
//
// Usage that is rolled up for a month after that month's invoice was issued
// is never lost: the next month's invoice carries an adjustment line (kind
// "adjustment", period_start of the earlier month) per function version whose
// usage grew. The adjustment re-prices the earlier month's whole usage of that
// version with the same rules and charges the difference from what earlier
// invoices (open, paid or void) already billed for it, so the amounts billed
// for a month always add up to the price of its full usage, rounded per line.
// An adjustment can be negative for one version when late calls of an earlier
// hour take free calls or cheaper tiers from another version's later calls;
// the function's total never goes down. Closed months are looked back at for
// Config.AdjustmentLookbackMonths (default 12); a month that was never closed
// is billed in full when it is billed, never by adjustment.
//
// # One run at a time
//
// A billing run holds the "bill" lease (a row in billing_leases, the same on
// SQLite and PostgreSQL) from start to finish, whatever its month: two runs
// of one month would push the same invoices to Stripe, and two months billed
// at once could both charge the same late usage of an earlier month. A
// second run meanwhile fails with ECONFLICT naming the holder (the bill
// command exits saying so). The holder renews the lease every third of
// Config.LeaseTTL (default 2 minutes) and deletes it when done; a run that
// was killed blocks others only until its lease lapses, and a run that lost
// its lease (it stalled past the end and another took over) is cancelled.
// Stripe sync passes hold the "stripe-sync" lease the same way: the worker
// skips its pass while another process syncs, and a billing run waits for
// that pass to end and then syncs what it issued.
//
// # Lifecycle
//
// An invoice moves draft -> open -> paid or void; every other move is an
// error. Each transition is written to invoice_events with its time and what
// drove it (billing, operator, stripe). A failed payment (invoice.payment_failed)
// is recorded as an event and leaves the invoice open. An invoice whose total is
// zero is marked paid as soon as it is issued, since there is nothing to
// collect; so is one whose total is negative (only possible through negative
// adjustments), whose credit is not carried forward. An invoice settled before
// it reached Stripe is never pushed afterwards.
//
// # Stripe's minimum charge
//
// Stripe does not charge an invoice whose total is under its minimum charge
// for the currency (0.50 USD, 0.30 GBP, ...: MinimumChargeCents); it marks it
// paid and moves the amount to the customer's balance. fnmarket must not pay
// vendors for money it did not collect, so, with Stripe configured:
//
//   - an issued invoice whose total is positive but under the minimum is not
//     pushed to Stripe. It stays open in fnmarket with sync_status
//     "carried_forward" (and an event saying so);
//   - the consumer's next invoice in that currency (the first one issued for
//     a later month; a consumer without usage gets none) carries its total as
//     a "carried_forward" line (period_start of the carried month,
//     carried_invoice_id naming it), and the carried invoice records it in
//     carried_forward_to. If that invoice is under the minimum too, the whole
//     of it is carried again;
//   - when the carrying invoice is paid, the invoices it carried are paid with
//     it ("collected on invoice ..."), and only then are their vendor shares
//     paid out. If it is voided, what it carried is owed again and carried to
//     the next invoice. An operator cannot settle a carried invoice on its
//     own: it is settled with the one that carries it.
//
// A carried_forward line belongs to no vendor: vendors' gross, statements and
// payouts count each month's usage once, on the invoice of that month. Nor
// does a credit line: credit paid for the usage the vendor is paid for.
//
// # Vendor statements
//
// When an invoice is issued, each vendor's share of it is written
// (vendor_shares): gross is the sum of that vendor's rounded lines on the
// invoice, with the fee rate in force (Config.PlatformFeeRate). The platform
// fee is rounded once per vendor, month and currency, never per invoice (a
// 0.02 invoice would otherwise pay no fee at all): a month's statement sums
// the gross of that month's open and paid invoices (void ones are left out),
// fee = round(gross x rate) half-even to cents, and net = gross - fee.
// Adjustment lines count in the month of the invoice that carries them.
//
// A share's own fee and net are fixed when its invoice is paid: its fee is
// round(sum of gross x rate over the vendor's month's shares paid so far,
// itself included) minus the fees already fixed, so each share pays within a
// cent of its exact fee and, once every invoice of the month is paid or void,
// the shares' fees and nets add up exactly to the statement's. A vendor's
// gross equals the sum of its lines on consumers' invoices and its net the
// sum of what it is paid (a share whose net is zero or negative pays
// nothing).
//
// A statement also says where the money is: collected is the sum of the fixed
// nets of the month's shares whose invoice is paid (an invoice prepaid credit
// covered entirely is paid when issued; shares with nothing due add
// nothing), and paid_out the sum of those transferred to the vendor. So an
// issued, unpaid invoice shows in gross but not in collected; once it is paid
// its net is collected; once the payout job has transferred it, paid out.
//
// # Stripe
//
// Stripe is optional. When configured, issued invoices whose total is at
// least the minimum charge are pushed to Stripe: the customer is created on
// the consumer's first invoice (stripe_customers), a Stripe invoice is
// created (excluding pending items), one invoice item per non-zero line is
// attached to it, and it is finalized. Every request carries an idempotency key derived from our ids
// (fnm-cus-<consumer>, fnm-inv-<invoice>-create, fnm-inv-<invoice>-item-<line>,
// fnm-inv-<invoice>-finalize, fnm-pay-<invoice>-<vendor>), and each object's
// Stripe id is stored as soon as it exists, so a retry, even after Stripe's
// 24-hour key window, neither charges nor pays twice. When Stripe is down or
// answers with an error, the invoice stays issued locally with sync_status
// "pending" (or "failed" for a request Stripe rejects as invalid) and SyncPending
// retries later; billing never waits on Stripe.
//
// After an invoice is paid, each vendor with a Connect account and a positive
// net receives a transfer of that net; vendors not yet onboarded are paid by a
// later SyncPending once they are.
//
// Webhooks are verified with the endpoint secret. The event's API version is
// not checked (IgnoreAPIVersionMismatch): the fields read here (the invoice
// id) are the same in every API version, and a Stripe account upgrade must not
// stop invoices being marked paid. The signature's age is checked against the
// injected clock instead of the library's wall clock. Processed event ids are
// stored in the same transaction as the change they cause, so a redelivered
// event is a no-op and a failed one is retried by Stripe.
//
// # Paying: cards and prepaid credit
//
// With Stripe configured, consumers add a card and buy prepaid credit through
// Stripe Checkout (PaymentMethodCheckout, CreditCheckout; without Stripe both
// are ECONFLICT errors and every account stays active, paying by invoice).
// Nothing is believed from the browser's return: only a signed
// checkout.session.completed event of a session fnmarket made (its metadata
// names the account) changes anything. A setup session's card is read from
// Stripe (its SetupIntent's payment method), made the customer's default for
// invoices, and stored with its brand and last four digits
// (accounts.SetPaymentMethod); a paid payment session grants its amount_total
// as credit in USD (accounts.GrantCredit), once per session whatever the
// event ids. Invoice events and every settled invoice record that the
// account's standing may have changed (accounts.TouchBilling), so gateways
// reload its keys; standing itself is decided by accounts.Store.Billing.
package billing
