package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
)

// StripeConfig turns on Stripe sync. A zero value (no SecretKey) leaves
// invoices in fnmarket only.
type StripeConfig struct {
	// SecretKey is the Stripe API key (STRIPE_SECRET_KEY).
	SecretKey string
	// APIBase overrides Stripe's API URL, e.g. stripe-mock's (STRIPE_API_BASE).
	APIBase string
	// WebhookSecret verifies webhook signatures (STRIPE_WEBHOOK_SECRET).
	WebhookSecret string
	// WebhookTolerance is how far a webhook signature's time may be from the
	// clock; 0 means 5 minutes.
	WebhookTolerance time.Duration
	// HTTPClient, optional, carries the API calls; nil means a client with a
	// 30-second timeout (never http.DefaultClient).
	HTTPClient *http.Client
	// MaxNetworkRetries is how often one request is retried at once, with the
	// same idempotency key; 0 means none (SyncPending retries later instead).
	MaxNetworkRetries int
}

// stripeSync holds the Stripe client, built without any global state.
type stripeSync struct {
	api           *client.API
	webhookSecret string
	tolerance     time.Duration
}

func newStripeSync(cfg StripeConfig, log *slog.Logger) *stripeSync {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	backend := func(t stripe.SupportedBackend, u string) stripe.Backend {
		bc := &stripe.BackendConfig{HTTPClient: hc, LeveledLogger: stripeLogger{log}, MaxNetworkRetries: stripe.Int64(int64(cfg.MaxNetworkRetries)),
			EnableTelemetry: stripe.Bool(false)}
		if u != "" {
			bc.URL = stripe.String(u)
		}
		return stripe.GetBackendWithConfig(t, bc)
	}
	api := client.New(cfg.SecretKey, &stripe.Backends{
		API:     backend(stripe.APIBackend, cfg.APIBase),
		Connect: backend(stripe.ConnectBackend, ""),
		Uploads: backend(stripe.UploadsBackend, ""),
	})
	tol := cfg.WebhookTolerance
	if tol <= 0 {
		tol = 5 * time.Minute
	}
	return &stripeSync{api: api, webhookSecret: cfg.WebhookSecret, tolerance: tol}
}

// stripeLogger sends stripe-go's logging to slog.
type stripeLogger struct{ l *slog.Logger }

func (s stripeLogger) Debugf(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "stripe")
}
func (s stripeLogger) Infof(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "stripe")
}
func (s stripeLogger) Warnf(format string, v ...any) {
	s.l.Warn(fmt.Sprintf(format, v...), "component", "stripe")
}
func (s stripeLogger) Errorf(format string, v ...any) {
	s.l.Warn(fmt.Sprintf(format, v...), "component", "stripe")
}

// params gives a request its context and idempotency key.
func params(ctx context.Context, p *stripe.Params, key string) {
	p.Context = ctx
	p.SetIdempotencyKey(key)
}

// SyncResult says what one SyncPending pass did.
type SyncResult struct {
	Invoices        int `json:"invoices"`
	InvoiceFailures int `json:"invoice_failures"`
	Payouts         int `json:"payouts"`
	PayoutFailures  int `json:"payout_failures"`
}

// SyncPending pushes every open invoice still waiting for Stripe and makes
// every transfer still owed to an onboarded vendor, with the same idempotency
// keys as any earlier attempt. Stripe failures are counted and left pending
// for the next pass; only database errors are returned, and an ECONFLICT
// error when another process is syncing (one pass at a time, see
// billing_leases). Without Stripe it does nothing.
func (b *Biller) SyncPending(ctx context.Context) (SyncResult, error) {
	if b.stripe == nil {
		return SyncResult{}, nil
	}
	lease, err := b.tryLease(ctx, leaseStripeSync)
	if err != nil {
		return SyncResult{}, err
	}
	defer lease.release()
	return b.syncPending(lease.ctx)
}

// syncAfterBilling is the sync a billing run makes: it waits for a pass
// another process is making (which may have listed the invoices before they
// were issued) rather than leave them to the next one.
func (b *Biller) syncAfterBilling(ctx context.Context) (SyncResult, error) {
	lease, err := b.waitLease(ctx, leaseStripeSync, 2*b.leaseTTL)
	if err != nil {
		return SyncResult{}, err
	}
	defer lease.release()
	return b.syncPending(lease.ctx)
}

func (b *Biller) syncPending(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	var rows []invoiceRow
	err := b.db.WithContext(ctx).Where("sync_status = ? AND status = ?", SyncPending, StatusOpen).Order("created_at, id").Find(&rows).Error
	if err != nil {
		return res, fmt.Errorf("list invoices to sync: %w", err)
	}
	for _, r := range rows {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := b.syncInvoice(ctx, r); err != nil {
			res.InvoiceFailures++
			if ferr := b.recordSyncFailure(ctx, r.ID, err); ferr != nil {
				return res, ferr
			}
			continue
		}
		res.Invoices++
	}
	var shares []shareRow
	if err := b.db.WithContext(ctx).Where("payout_status = ?", PayoutPending).Order("invoice_id, vendor_id").Find(&shares).Error; err != nil {
		return res, fmt.Errorf("list payouts owed: %w", err)
	}
	done, failed, err := b.payShares(ctx, shares)
	res.Payouts, res.PayoutFailures = done, failed
	return res, err
}

func (b *Biller) recordSyncFailure(ctx context.Context, id string, cause error) error {
	status := SyncPending
	if permanent(cause) {
		status = SyncFailed
	}
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	b.log.WarnContext(ctx, "stripe sync failed", "invoice", id, "status", status, "err", cause)
	err := b.db.WithContext(ctx).Model(&invoiceRow{}).Where("id = ? AND sync_status = ?", id, SyncPending).
		Updates(map[string]any{"sync_status": status, "sync_error": msg, "sync_attempts": gorm.Expr("sync_attempts + 1"), "updated_at": b.clock.Now()}).Error
	return wrap("record stripe failure of "+id, err)
}

// permanent reports whether Stripe rejected the request itself, so repeating
// it cannot help; outages, rate limits and auth problems are worth retrying.
func permanent(err error) bool {
	var se *stripe.Error
	if errors.As(err, &se) {
		return se.HTTPStatusCode == http.StatusBadRequest || se.HTTPStatusCode == http.StatusNotFound
	}
	return false
}

// syncInvoice pushes one open invoice: customer, Stripe invoice, one item per
// non-zero line (a credit line is a negative item, so the credited part is
// never charged), finalize. Each object's id is stored as soon as Stripe
// returns it, so a later attempt resumes instead of repeating.
func (b *Biller) syncInvoice(ctx context.Context, r invoiceRow) error {
	api := b.stripe.api
	customerID, err := b.ensureCustomer(ctx, r.ConsumerID)
	if err != nil {
		return err
	}
	currency := strings.ToLower(r.Currency)
	month := unix(r.PeriodStart).Format("2006-01")
	var sid string
	if r.StripeInvoiceID != nil {
		sid = *r.StripeInvoiceID
	} else {
		p := &stripe.InvoiceParams{
			Customer: stripe.String(customerID), Currency: stripe.String(currency), AutoAdvance: stripe.Bool(false),
			CollectionMethod:            stripe.String(string(stripe.InvoiceCollectionMethodChargeAutomatically)),
			PendingInvoiceItemsBehavior: stripe.String("exclude"),
			Description:                 stripe.String("fnmarket usage " + month),
		}
		p.AddMetadata("fnm_invoice_id", r.ID)
		params(ctx, &p.Params, "fnm-inv-"+r.ID+"-create")
		si, err := api.Invoices.New(p)
		if err != nil {
			return fmt.Errorf("create stripe invoice for %s: %w", r.ID, err)
		}
		sid = si.ID
		if err := b.db.WithContext(ctx).Model(&invoiceRow{}).Where("id = ?", r.ID).Update("stripe_invoice_id", sid).Error; err != nil {
			return fmt.Errorf("store stripe invoice id of %s: %w", r.ID, err)
		}
	}
	var lines []lineRow
	if err := b.db.WithContext(ctx).Where("invoice_id = ? AND amount_cents <> 0 AND stripe_item_id IS NULL", r.ID).Order("line_no").Find(&lines).Error; err != nil {
		return fmt.Errorf("read lines of %s: %w", r.ID, err)
	}
	for _, l := range lines {
		desc := fmt.Sprintf("%s v%d, %s: %d calls (%d free), %d compute-ms", l.FunctionLabel, l.Version, unix(l.UsagePeriodStart).Format("2006-01"), l.Calls, l.FreeCalls, l.ComputeMs)
		switch l.Kind {
		case LineAdjustment:
			desc = "Late usage adjustment: " + desc
		case LineCarriedForward:
			desc = "Carried forward: " + l.FunctionLabel
		case LineCredit:
			// A negative item: Stripe charges the total less the credit,
			// which was paid when it was bought.
			desc = "Prepaid credit applied to usage of " + unix(l.UsagePeriodStart).Format("2006-01")
		}
		p := &stripe.InvoiceItemParams{Customer: stripe.String(customerID), Invoice: stripe.String(sid), Amount: stripe.Int64(l.AmountCents),
			Currency: stripe.String(currency), Description: stripe.String(desc)}
		p.AddMetadata("fnm_invoice_id", r.ID)
		p.AddMetadata("fnm_line", strconv.Itoa(l.LineNo))
		params(ctx, &p.Params, fmt.Sprintf("fnm-inv-%s-item-%d", r.ID, l.LineNo))
		item, err := api.InvoiceItems.New(p)
		if err != nil {
			return fmt.Errorf("add line %d of %s to stripe: %w", l.LineNo, r.ID, err)
		}
		err = b.db.WithContext(ctx).Model(&lineRow{}).Where("invoice_id = ? AND line_no = ?", r.ID, l.LineNo).Update("stripe_item_id", item.ID).Error
		if err != nil {
			return fmt.Errorf("store stripe item of %s line %d: %w", r.ID, l.LineNo, err)
		}
	}
	fp := &stripe.InvoiceFinalizeInvoiceParams{AutoAdvance: stripe.Bool(true)}
	params(ctx, &fp.Params, "fnm-inv-"+r.ID+"-finalize")
	if _, err := api.Invoices.FinalizeInvoice(sid, fp); err != nil {
		return fmt.Errorf("finalize stripe invoice of %s: %w", r.ID, err)
	}
	err = b.db.WithContext(ctx).Model(&invoiceRow{}).Where("id = ? AND sync_status = ?", r.ID, SyncPending).
		Updates(map[string]any{"sync_status": SyncSynced, "sync_error": "", "updated_at": b.clock.Now()}).Error
	return wrap("mark "+r.ID+" synced", err)
}

// ensureCustomer returns the consumer's Stripe customer, creating it on the
// first invoice.
func (b *Biller) ensureCustomer(ctx context.Context, consumerID string) (string, error) {
	var c customerRow
	err := b.db.WithContext(ctx).Where("consumer_id = ?", consumerID).Take(&c).Error
	if err == nil {
		return c.StripeCustomerID, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return "", fmt.Errorf("read stripe customer of %s: %w", consumerID, err)
	}
	p := &stripe.CustomerParams{}
	p.AddMetadata("fnm_consumer_id", consumerID)
	if b.accounts != nil {
		accs, err := b.accounts.AccountsByID(ctx, []string{consumerID})
		if err != nil {
			return "", fmt.Errorf("read account %s: %w", consumerID, err)
		}
		if a, ok := accs[consumerID]; ok {
			p.Email, p.Name = stripe.String(a.Email), stripe.String(a.Name)
		}
	}
	params(ctx, &p.Params, "fnm-cus-"+consumerID)
	cus, err := b.stripe.api.Customers.New(p)
	if err != nil {
		return "", fmt.Errorf("create stripe customer for %s: %w", consumerID, err)
	}
	row := customerRow{ConsumerID: consumerID, StripeCustomerID: cus.ID, CreatedAt: b.clock.Now()}
	if err := b.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row).Error; err != nil {
		return "", fmt.Errorf("store stripe customer of %s: %w", consumerID, err)
	}
	// Another process may have stored one first; theirs is the one to keep.
	if err := b.db.WithContext(ctx).Where("consumer_id = ?", consumerID).Take(&c).Error; err != nil {
		return "", fmt.Errorf("read stripe customer of %s: %w", consumerID, err)
	}
	return c.StripeCustomerID, nil
}

// payInvoice transfers each vendor's net share of a paid invoice and of the
// invoices it carried forward.
func (b *Biller) payInvoice(ctx context.Context, invoiceID string) (int, error) {
	ids, next := []string{invoiceID}, []string{invoiceID}
	for len(next) > 0 {
		var carried []string
		if err := b.db.WithContext(ctx).Model(&invoiceRow{}).Where("carried_to IN ?", next).Pluck("id", &carried).Error; err != nil {
			return 0, fmt.Errorf("read invoices carried by %s: %w", invoiceID, err)
		}
		ids, next = append(ids, carried...), carried
	}
	var shares []shareRow
	if err := b.db.WithContext(ctx).Where("invoice_id IN ? AND payout_status = ?", ids, PayoutPending).Order("invoice_id, vendor_id").Find(&shares).Error; err != nil {
		return 0, fmt.Errorf("read shares of %s: %w", invoiceID, err)
	}
	done, failed, err := b.payShares(ctx, shares)
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d of the transfers for %s failed; they are retried later", failed, invoiceID)
	}
	return done, err
}

// payShares makes the transfers for shares that are owed. A vendor not yet
// onboarded to Connect is skipped and paid by a later pass.
func (b *Biller) payShares(ctx context.Context, shares []shareRow) (done, failed int, err error) {
	if b.stripe == nil || len(shares) == 0 {
		return 0, 0, nil
	}
	ids := map[string]bool{}
	var list []string
	for _, s := range shares {
		if !ids[s.VendorID] {
			ids[s.VendorID] = true
			list = append(list, s.VendorID)
		}
	}
	vendors, err := b.catalog.VendorsByID(ctx, list)
	if err != nil {
		return 0, 0, fmt.Errorf("read vendors for payouts: %w", err)
	}
	for _, s := range shares {
		acct := vendors[s.VendorID].StripeAccountID
		if acct == "" || s.NetCents <= 0 {
			continue
		}
		p := &stripe.TransferParams{Amount: stripe.Int64(s.NetCents), Currency: stripe.String(strings.ToLower(s.Currency)),
			Destination: stripe.String(acct), TransferGroup: stripe.String(s.InvoiceID)}
		p.AddMetadata("fnm_invoice_id", s.InvoiceID)
		p.AddMetadata("fnm_vendor_id", s.VendorID)
		params(ctx, &p.Params, "fnm-pay-"+s.InvoiceID+"-"+s.VendorID)
		tr, terr := b.stripe.api.Transfers.New(p)
		if terr != nil {
			failed++
			b.log.WarnContext(ctx, "vendor transfer failed; retried later", "invoice", s.InvoiceID, "vendor", s.VendorID, "err", terr)
			continue
		}
		// payout.sent is written with the transfer's record, once.
		err := b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			now := b.clock.Now()
			res := tx.Model(&shareRow{}).Where("invoice_id = ? AND vendor_id = ? AND payout_status = ?", s.InvoiceID, s.VendorID, PayoutPending).
				Updates(map[string]any{"payout_status": PayoutTransferred, "stripe_transfer_id": tr.ID, "updated_at": now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			return payoutEvent(tx, s, tr.ID, now)
		})
		if err != nil {
			return done, failed, fmt.Errorf("record transfer of %s to %s: %w", s.InvoiceID, s.VendorID, err)
		}
		done++
	}
	return done, failed, nil
}

// mirror tells Stripe about an operator's transition before it is made
// locally: a finalized Stripe invoice is voided or marked paid out of band; a
// Stripe draft left by an unfinished sync is deleted.
func (s *stripeSync) mirror(ctx context.Context, r invoiceRow, to Status) error {
	sid := *r.StripeInvoiceID
	if r.SyncStatus != SyncSynced {
		p := &stripe.InvoiceParams{}
		params(ctx, &p.Params, "fnm-inv-"+r.ID+"-delete")
		_, err := s.api.Invoices.Del(sid, p)
		return err
	}
	switch to {
	case StatusVoid:
		p := &stripe.InvoiceVoidInvoiceParams{}
		params(ctx, &p.Params, "fnm-inv-"+r.ID+"-void")
		_, err := s.api.Invoices.VoidInvoice(sid, p)
		return err
	case StatusPaid:
		p := &stripe.InvoicePayParams{PaidOutOfBand: stripe.Bool(true)}
		params(ctx, &p.Params, "fnm-inv-"+r.ID+"-paid-out-of-band")
		_, err := s.api.Invoices.Pay(sid, p)
		return err
	}
	return nil
}

// OnboardVendor starts (or resumes) a vendor's Stripe Connect onboarding: it
// creates the vendor's express account the first time and returns a fresh
// account link URL that comes back to returnURL.
func (b *Biller) OnboardVendor(ctx context.Context, vendorID, returnURL string) (string, error) {
	if b.stripe == nil {
		return "", fnmarket.Errorf(fnmarket.ECONFLICT, "payouts need Stripe, which is not configured on this server")
	}
	if u, err := url.Parse(returnURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the return URL must be an absolute http(s) URL",
			Fields: map[string]string{"return_url": "must be an absolute http(s) URL"}}
	}
	vs, err := b.catalog.VendorsByID(ctx, []string{vendorID})
	if err != nil {
		return "", fmt.Errorf("read vendor %s: %w", vendorID, err)
	}
	v, ok := vs[vendorID]
	if !ok {
		return "", fnmarket.Errorf(fnmarket.ENOTFOUND, "no vendor %q", vendorID)
	}
	acct := v.StripeAccountID
	if acct == "" {
		p := &stripe.AccountParams{Type: stripe.String(string(stripe.AccountTypeExpress))}
		p.AddMetadata("fnm_vendor_id", vendorID)
		params(ctx, &p.Params, "fnm-ven-"+vendorID+"-account")
		a, err := b.stripe.api.Accounts.New(p)
		if err != nil {
			return "", fmt.Errorf("create connect account for %s: %w", vendorID, err)
		}
		if err := b.catalog.SetVendorStripeAccount(ctx, vendorID, a.ID); err != nil {
			return "", fmt.Errorf("store connect account of %s: %w", vendorID, err)
		}
		acct = a.ID
	}
	p := &stripe.AccountLinkParams{Account: stripe.String(acct), RefreshURL: stripe.String(returnURL), ReturnURL: stripe.String(returnURL),
		Type: stripe.String("account_onboarding")}
	// Links are single-use and expire, so the key changes each minute: a retry
	// gets the same link, a later visit a fresh one.
	params(ctx, &p.Params, fmt.Sprintf("fnm-ven-%s-link-%d", vendorID, b.clock.Now().Unix()/60))
	link, err := b.stripe.api.AccountLinks.New(p)
	if err != nil {
		return "", fmt.Errorf("create account link for %s: %w", vendorID, err)
	}
	return link.URL, nil
}
