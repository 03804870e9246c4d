// Package webhooks tells account owners what happened: events written to a
// transactional outbox in the same transaction as their cause, delivered to
// the account's endpoints signed as the Standard Webhooks specification
// says (API.md, "Webhooks (outbound)"; README, "Webhooks").
//
// # Tables (migration 00012)
//
// webhook_events is the outbox: Enqueue writes a row in the caller's
// transaction, so an event exists exactly when its cause was committed; its
// id is the webhook-id of every attempt and its payload the exact body.
// webhook_endpoints are the accounts' endpoints (Store), at most
// MaxEndpoints each, soft-deleted so delivery logs stay whole.
// webhook_deliveries holds one row per event and endpoint (a unique index),
// with its status, attempts, last answer and next attempt.
//
// # Delivery (Deliverer)
//
// Each pass fans out: events not yet fanned out are taken (FOR UPDATE SKIP
// LOCKED on PostgreSQL) and given one pending delivery per enabled endpoint
// of their account subscribed to their type (webhook.test events are made
// by Store.SendTest with their one delivery). Then it sends: due deliveries
// are claimed the same way and leased, their next_attempt_at pushed past the
// send and a claim token set, in one short transaction; the sends run
// outside it, Concurrency at once, 5 s each, redirects not followed, through
// the gateway's dial guard; each outcome is written only if the claim is
// still this pass's. Success is any 2xx. A failure schedules the next try
// after Backoff (5 s to 10 h, 8 attempts over about 27.6 h), then the
// delivery fails. An endpoint keeps failing_since, the first failure since
// its last success; once that is DisableAfter (5 days) old, the endpoint is
// disabled with a reason and its pending deliveries fail. Its owner can
// enable it again (Store.EnableEndpoint), which clears failing_since too.
//
// At least once: a worker that dies between send and record leaves the lease
// to expire, and the delivery is sent again with the same webhook-id;
// receivers deduplicate on it. Two workers never hold one delivery at once
// (SKIP LOCKED, and the lease's own status and time check), so in the
// normal case each delivery is sent once (TestTwoDeliverersShareTheOutbox).
// SQLite has one connection in one process: its transactions serialise.
//
// Locks are taken endpoint before deliveries (DeleteEndpoint, disabling in
// record), never the other way, so the two cannot deadlock.
package webhooks
