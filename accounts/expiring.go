package accounts

import (
	"context"
	"strconv"
	"time"

	"github.com/fnmarket/fnmarket/webhooks"
)

// ExpiringNotice is how long before its expiry a key's account is sent
// key.expiring.
const ExpiringNotice = 72 * time.Hour

// NotifyExpiringKeys enqueues a key.expiring webhook event for every
// unrevoked key that expires within ExpiringNotice of now and has not
// expired yet. Each event's dedupe key names the key and its expiry
// ("key.expiring:<key id>:<expires_at unix>"), so a key is announced exactly
// once per expiry however often this runs and on however many workers. It
// returns how many events it wrote.
func (s *Store) NotifyExpiringKeys(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC()
	var rows []keyRow
	err := s.db.WithContext(ctx).Where("revoked_at IS NULL AND expires_at > ? AND expires_at <= ?", now, now.Add(ExpiringNotice)).
		Order("expires_at, id").Find(&rows).Error
	if err != nil {
		return 0, wrap("find expiring keys", err)
	}
	written := 0
	for _, r := range rows {
		k := r.domain()
		_, ok, err := webhooks.Enqueue(s.db.WithContext(ctx), webhooks.Event{
			AccountID: k.AccountID,
			Type:      webhooks.TypeKeyExpiring,
			Data:      map[string]any{"key_id": k.ID, "name": k.Name, "prefix": k.Prefix, "expires_at": k.ExpiresAt.Format(time.RFC3339)},
			DedupeKey: "key.expiring:" + k.ID + ":" + strconv.FormatInt(k.ExpiresAt.Unix(), 10),
		}, now)
		if err != nil {
			return written, wrap("enqueue key.expiring", err)
		}
		if ok {
			written++
		}
	}
	return written, nil
}
