package reward

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Kudos is a thank-you from a colleague, with a few points maybe.
type Kudos struct {
	ID          uuid.UUID
	SenderID    uuid.UUID
	RecipientID uuid.UUID
	Message     string
	Points      int64
	// WinID is the team-feed win a manager attached it to.
	WinID  uuid.UUID
	SentAt time.Time
	// AllowanceLeft is the sender's points left to give this month.
	AllowanceLeft int64
}

// KudosRequest is a person's kudos to a colleague.
type KudosRequest struct {
	RecipientID uuid.UUID
	Message     string
	// Points come from the sender's monthly allowance (0: none).
	Points int64
	// WinID attaches the kudos to a win of the team feed (managers).
	WinID     uuid.UUID
	RequestID string
}

// MaxKudosMessage bounds a kudos' message.
const MaxKudosMessage = 280

// SendKudos sends kudos: the recipient gets the points (from the sender's
// monthly allowance, the sender's local month), the team feed shows them.
// Retrying with the same request id sends once.
//
// Errors: CodeInvalid for an empty or too long message, oneself as
// recipient, negative points; CodeNotFound for a recipient or win not in the
// company; CodePermissionDenied for a non-manager attaching a win;
// CodeFailedPrecondition for a deactivated recipient (INACTIVE);
// CodeResourceExhausted when the points exceed what is left of the monthly
// allowance (ALLOWANCE_EXCEEDED).
func (s *Service) SendKudos(ctx context.Context, p rallye.Principal, req KudosRequest) (Kudos, error) {
	if !p.IsPerson() {
		return Kudos{}, failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	req.Message = strings.TrimSpace(req.Message)
	switch {
	case req.Message == "" || len([]rune(req.Message)) > MaxKudosMessage:
		return Kudos{}, rallye.Invalid("message", "must be 1 to %d characters", MaxKudosMessage)
	case req.RecipientID == p.UserID:
		return Kudos{}, rallye.Invalid("recipient_id", "kudos go to a colleague, not to yourself")
	case req.Points < 0:
		return Kudos{}, rallye.Invalid("points", "must not be negative")
	case req.WinID != uuid.Nil && !p.Has(rallye.RoleManager, rallye.RoleAdmin):
		return Kudos{}, denied("managers attach kudos to a win")
	}
	var out Kudos
	err := s.inTenant(ctx, p.TenantID, func(ctx context.Context, tx pgx.Tx) error {
		w := s.newWork(ctx, tx, p.TenantID)
		ps, err := w.people([]uuid.UUID{p.UserID, req.RecipientID})
		if err != nil {
			return err
		}
		sender, to := ps[p.UserID], ps[req.RecipientID]
		if to.ID == uuid.Nil {
			return rallye.NotFound("person")
		}
		if !to.Active {
			return failed("INACTIVE", "the person is deactivated")
		}
		if req.WinID != uuid.Nil {
			var kind string
			err := tx.QueryRow(ctx, `SELECT kind FROM reward_feed WHERE tenant_id = $1 AND id = $2`, p.TenantID, req.WinID).Scan(&kind)
			if postgres.IsNoRows(err) || err == nil && kind != string(FeedWin) {
				return &rallye.Error{Code: rallye.CodeNotFound, Field: "win_id", Message: "win not found"}
			}
			if err != nil {
				return fmt.Errorf("read win: %w", err)
			}
		}
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "SendKudos",
			RequestID: req.RequestID, Request: req}, newID())
		if err != nil {
			return err
		}
		st, err := w.settings()
		if err != nil {
			return err
		}
		now := s.now()
		local := now.In(sender.location())
		month := civil(local.Year(), local.Month(), 1)
		if !fresh {
			out, err = getKudos(ctx, tx, p.TenantID, id)
			if err == nil {
				out.AllowanceLeft, err = allowanceLeft(ctx, tx, p.TenantID, p.UserID, month, st.KudosAllowance)
			}
			return err
		}
		used := int64(0)
		if req.Points > 0 {
			if req.Points > st.KudosAllowance {
				return &rallye.Error{Code: rallye.CodeResourceExhausted, Reason: "ALLOWANCE_EXCEEDED",
					Message: fmt.Sprintf("the company's kudos allowance is %d points a month", st.KudosAllowance)}
			}
			// One statement checks and spends the allowance: concurrent
			// kudos of one sender wait for each other's row.
			err := tx.QueryRow(ctx, `INSERT INTO kudos_allowance AS a (tenant_id, user_id, month, used) VALUES ($1, $2, $3, $4)
				ON CONFLICT (tenant_id, user_id, month) DO UPDATE SET used = a.used + excluded.used
					WHERE a.used + excluded.used <= $5
				RETURNING used`, p.TenantID, p.UserID, month, req.Points, st.KudosAllowance).Scan(&used)
			if postgres.IsNoRows(err) {
				left, lerr := allowanceLeft(ctx, tx, p.TenantID, p.UserID, month, st.KudosAllowance)
				if lerr != nil {
					return lerr
				}
				return &rallye.Error{Code: rallye.CodeResourceExhausted, Reason: "ALLOWANCE_EXCEEDED",
					Message: fmt.Sprintf("you have %d points left to give this month", left)}
			}
			if err != nil {
				return fmt.Errorf("spend kudos allowance: %w", err)
			}
		} else if used, err = allowanceUsed(ctx, tx, p.TenantID, p.UserID, month); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kudos (tenant_id, id, sender_id, recipient_id, message, points, win_id, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, p.TenantID, id, p.UserID, to.ID, req.Message, req.Points,
			nullID(req.WinID), now); err != nil {
			return fmt.Errorf("insert kudos: %w", err)
		}
		out = Kudos{ID: id, SenderID: p.UserID, RecipientID: to.ID, Message: req.Message, Points: req.Points, WinID: req.WinID,
			SentAt: now, AllowanceLeft: max(st.KudosAllowance-used, 0)}
		if err := w.feed(feedEntry{Kind: FeedKudos, UserID: to.ID, TeamIDs: to.TeamIDs, At: now, Key: "kudos:" + id.String(),
			Data: feedData{KudosID: id, FromID: p.UserID, From: sender.DisplayName, Message: req.Message, KudosPoints: req.Points,
				WinID: req.WinID}}); err != nil {
			return err
		}
		if err := w.count(to, counterKudos, civil(1, 1, 1), 1, now); err != nil {
			return err
		}
		w.announce(outbox.Message{Kind: MessageKudosSent, Key: "kudos:" + id.String(), Subjects: []uuid.UUID{to.ID, p.UserID},
			OccurredAt: now, Payload: KudosSent{KudosID: id, SenderID: p.UserID, Sender: sender.DisplayName, RecipientID: to.ID,
				Message: req.Message, Points: req.Points, WinID: req.WinID}})
		if req.Points > 0 {
			if err := s.record(ctx, tx, p.TenantID, []leaderboard.Entry{{
				Key: "kudos:" + id.String(), UserID: to.ID, Points: req.Points, At: now, Reason: "kudos",
				Kind: leaderboard.EntryKudos, Cause: cause{KudosID: id, ByID: p.UserID, By: sender.DisplayName, Reason: req.Message}.json(),
			}}); err != nil {
				return err
			}
			w.announce(outbox.Message{Kind: MessagePointsGranted, Key: "kudos:" + id.String(), Subjects: []uuid.UUID{to.ID},
				OccurredAt: now, Payload: PointsGranted{UserID: to.ID, Points: req.Points, Kind: "kudos", Reason: req.Message,
					ByID: p.UserID, By: sender.DisplayName}})
		}
		return w.flush()
	})
	return out, err
}

func getKudos(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (Kudos, error) {
	var k Kudos
	var win *uuid.UUID
	err := tx.QueryRow(ctx, `SELECT id, sender_id, recipient_id, message, points, win_id, sent_at FROM kudos
		WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&k.ID, &k.SenderID, &k.RecipientID, &k.Message, &k.Points, &win, &k.SentAt)
	if err != nil {
		return Kudos{}, fmt.Errorf("read kudos: %w", err)
	}
	if win != nil {
		k.WinID = *win
	}
	return k, nil
}

func allowanceUsed(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID, month time.Time) (int64, error) {
	var used int64
	err := tx.QueryRow(ctx, `SELECT used FROM kudos_allowance WHERE tenant_id = $1 AND user_id = $2 AND month = $3`,
		tenantID, userID, month).Scan(&used)
	if err != nil && !postgres.IsNoRows(err) {
		return 0, fmt.Errorf("read kudos allowance: %w", err)
	}
	return used, nil
}

func allowanceLeft(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID, month time.Time, allowance int64) (int64, error) {
	used, err := allowanceUsed(ctx, tx, tenantID, userID, month)
	return max(allowance-used, 0), err
}
