package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/rallye"
)

// section is one part of a person's export: a name and the query of its
// rows ($1: the company, $2: the person, $3: their CRM id).
type section struct {
	name, sql string
	one       bool // a single object instead of a list
}

// sections are what Rallye holds about a person, table by table (the
// README lists them). Devices: Rallye stores none (push tokens are not
// kept yet).
var sections = []section{
	{name: "person", one: true, sql: `SELECT id, display_name, email, external_id AS crm_id, locale, time_zone, roles, active,
		hire_date, created_at, updated_at, erased_at FROM users WHERE tenant_id = $1 AND id = $2`},
	{name: "teams", sql: `SELECT t.id, t.name, m.added_at FROM team_members m JOIN teams t ON t.tenant_id = m.tenant_id AND t.id = m.team_id
		WHERE m.tenant_id = $1 AND m.user_id = $2 ORDER BY t.name`},
	{name: "events", sql: `SELECT v.id AS version_id, v.source, v.external_id, v.revision, v.type, v.occurred_at, v.retracted,
		v.rep_external_id, v.account_id, v.opportunity_id, v.lead_id, v.amount, v.gross_margin, v.segment, v.product, v.deal_kind,
		v.stage, v.from_stage, v.score, v.channel, v.attributes, v.received_at
		FROM event_versions v WHERE v.tenant_id = $1 AND (v.user_id = $2 OR ($3 <> '' AND v.rep_external_id = $3))
		ORDER BY v.received_at, v.id`},
	{name: "parked_events", sql: `SELECT id, source, external_id, revision, event, parked_at, expires_at FROM parked_events
		WHERE tenant_id = $1 AND $2::uuid IS NOT NULL AND $3 <> '' AND rep_external_id = $3 ORDER BY parked_at`},
	{name: "kpi_values", sql: `SELECT v.measure_id, v.day, v.dim, v.value, v.n FROM kpi_values v
		WHERE v.tenant_id = $1 AND v.scope_kind = 2 AND v.scope_id = $2 ORDER BY v.measure_id, v.day, v.dim`},
	{name: "kpi_targets", sql: `SELECT id, kpi_id, period_kind, target, at_risk, off_track, created_at FROM kpi_targets
		WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
	{name: "kpi_alerts", sql: `SELECT id, kpi_id, period_key, level, value, projection, target, raised_at, acknowledged_at FROM kpi_alerts
		WHERE tenant_id = $1 AND ((scope_kind = 2 AND scope_id = $2) OR owner_id = $2 OR acknowledged_by = $2) ORDER BY raised_at`},
	{name: "action_plans", sql: `SELECT id, kpi_id, question, action, hypotheses, deadline, status, learnings, owner_id = $2 AS owner,
		created_by = $2 AS author, created_at FROM kpi_action_plans WHERE tenant_id = $1 AND (owner_id = $2 OR created_by = $2)`},
	{name: "challenges", sql: `SELECT e.challenge_id, c.definition->'name' AS challenge, e.team_id, e.enrolled_at, e.target
		FROM challenge_enrollments e JOIN challenges c ON c.tenant_id = e.tenant_id AND c.id = e.challenge_id
		WHERE e.tenant_id = $1 AND e.user_id = $2 ORDER BY e.enrolled_at`},
	{name: "challenges_created", sql: `SELECT id, definition->'name' AS challenge, created_at FROM challenges
		WHERE tenant_id = $1 AND created_by = $2`},
	{name: "challenge_contributions", sql: `SELECT * FROM challenge_contributions WHERE tenant_id = $1 AND user_id = $2`},
	{name: "mission_progress", sql: `SELECT * FROM challenge_progress WHERE tenant_id = $1 AND subject_id = $2`},
	{name: "mission_completions", sql: `SELECT * FROM challenge_awards WHERE tenant_id = $1 AND user_id = $2 ORDER BY awarded_at`},
	{name: "mission_submissions", sql: `SELECT * FROM mission_submissions WHERE tenant_id = $1 AND (user_id = $2 OR reviewed_by = $2)
		ORDER BY submitted_at`},
	{name: "challenge_rewards", sql: `SELECT * FROM challenge_reward_grants WHERE tenant_id = $1 AND user_id = $2 ORDER BY granted_at`},
	{name: "leaderboard_rows", sql: `SELECT s.board_id, b.kind, b.challenge_id, b.period, s.points, s.reached_at, s.final_rank
		FROM board_scores s JOIN boards b ON b.tenant_id = s.tenant_id AND b.id = s.board_id
		WHERE s.tenant_id = $1 AND s.member_id = $2`},
	{name: "wallet", one: true, sql: `SELECT spendable, lifetime, pending, updated_at FROM wallet_balances WHERE tenant_id = $1 AND user_id = $2`},
	{name: "ledger", sql: `SELECT seq, earned_at, kind, points, challenge_id, cause FROM points_ledger
		WHERE tenant_id = $1 AND user_id = $2 ORDER BY seq`},
	{name: "levels", sql: `SELECT level, reached_at FROM reward_levels WHERE tenant_id = $1 AND user_id = $2`},
	{name: "badges", sql: `SELECT b.id, b.name_fr, b.name_en, a.awarded_at, a.source FROM badge_awards a
		JOIN badges b ON b.tenant_id = a.tenant_id AND b.id = a.badge_id WHERE a.tenant_id = $1 AND a.user_id = $2 ORDER BY a.awarded_at`},
	{name: "streaks", sql: `SELECT 'activity' AS kind, to_jsonb(x) - 'tenant_id' - 'user_id' AS row FROM streak_activity x WHERE tenant_id = $1 AND user_id = $2
		UNION ALL SELECT 'freeze', to_jsonb(x) - 'tenant_id' - 'user_id' FROM streak_freezes x WHERE tenant_id = $1 AND user_id = $2
		UNION ALL SELECT 'risk_notice', to_jsonb(x) - 'tenant_id' - 'user_id' FROM streak_risk_notices x WHERE tenant_id = $1 AND user_id = $2`},
	{name: "counters", sql: `SELECT * FROM reward_counters WHERE tenant_id = $1 AND user_id = $2`},
	{name: "kudos", sql: `SELECT id, sender_id = $2 AS sent, sender_id, recipient_id, message, points, sent_at FROM kudos
		WHERE tenant_id = $1 AND (sender_id = $2 OR recipient_id = $2) ORDER BY sent_at`},
	{name: "kudos_allowance", sql: `SELECT * FROM kudos_allowance WHERE tenant_id = $1 AND user_id = $2`},
	{name: "team_feed", sql: `SELECT id, kind, data, occurred_at, hidden_at FROM reward_feed WHERE tenant_id = $1 AND user_id = $2 ORDER BY occurred_at`},
	{name: "redemptions", sql: `SELECT id, item_name_fr, item_name_en, state, cost, money_value, currency, note, requested_at, decided_at,
		fulfilled_at, user_id = $2 AS mine FROM redemptions
		WHERE tenant_id = $1 AND (user_id = $2 OR decided_by = $2 OR fulfilled_by = $2) ORDER BY requested_at`},
	{name: "api_keys_created", sql: `SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = $1 AND created_by = $2`},
	{name: "privacy_requests", sql: `SELECT id, kind, reason, requested_at FROM privacy_requests
		WHERE tenant_id = $1 AND subject_id = $2 ORDER BY requested_at`},
}

// Export returns everything Rallye holds about a person as one JSON
// document (a section per area, see sections) and records the request.
// Admins.
func (s *Service) Export(ctx context.Context, p rallye.Principal, userID uuid.UUID) (map[string]json.RawMessage, Request, error) {
	if err := adminOnly(p); err != nil {
		return nil, Request{}, err
	}
	var doc map[string]json.RawMessage
	var req Request
	err := s.d.DB.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		who, err := readSubject(ctx, tx, p.TenantID, userID)
		if err != nil {
			return err
		}
		doc = map[string]json.RawMessage{}
		counts := map[string]any{}
		for _, sec := range sections {
			q := `SELECT coalesce(jsonb_agg(to_jsonb(x) - 'tenant_id'), '[]'::jsonb) FROM (` + sec.sql + `) x`
			if sec.one {
				q = `SELECT coalesce((SELECT to_jsonb(x) - 'tenant_id' FROM (` + sec.sql + `) x), 'null'::jsonb)`
			}
			args := []any{p.TenantID, userID}
			if strings.Contains(sec.sql, "$3") {
				args = append(args, who.crm)
			}
			var raw []byte
			if err := tx.QueryRow(ctx, q, args...).Scan(&raw); err != nil {
				return fmt.Errorf("export %s: %w", sec.name, err)
			}
			doc[sec.name] = raw
			if !sec.one {
				var rows []json.RawMessage
				_ = json.Unmarshal(raw, &rows)
				counts[sec.name] = len(rows)
			}
		}
		req = Request{ID: uuid.New(), Kind: "export", SubjectID: userID, RequestedBy: p.UserID, Summary: counts, At: s.d.Now()}
		return record(ctx, tx, p.TenantID, req)
	})
	return doc, req, err
}

// jsonColumns are the stored JSON documents that may carry a person's name,
// email or CRM id as a value (a grant's "by", a feed line, an outbox
// message, a CRM event's attributes).
var jsonColumns = []struct{ table, column string }{
	{"points_ledger", "cause"},
	{"reward_feed", "data"},
	{"outbox_messages", "payload"},
	{"event_versions", "attributes"},
	{"parked_events", "event"},
	{"kpi_opportunities", "events"},
}

// Erase erases a person (see the package documentation) in one
// transaction, records the request, then drops their cached credentials and
// rebuilds the live boards they were on. Admins; not oneself.
func (s *Service) Erase(ctx context.Context, p rallye.Principal, userID uuid.UUID, reason string) (Request, error) {
	if err := adminOnly(p); err != nil {
		return Request{}, err
	}
	if userID == p.UserID {
		return Request{}, &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: "user_id",
			Message: "you cannot erase yourself: ask another admin"}
	}
	var req Request
	var boards []uuid.UUID
	err := s.d.DB.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		who, err := readSubject(ctx, tx, p.TenantID, userID)
		if err != nil {
			return err
		}
		if who.erased {
			return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: "user_id", Message: "the person is already erased"}
		}
		counts := map[string]any{}
		exec := func(name, sql string, args ...any) error {
			tag, err := tx.Exec(ctx, sql, append([]any{p.TenantID, userID}, args...)...)
			if err != nil {
				return fmt.Errorf("erase (%s): %w", name, err)
			}
			if n := tag.RowsAffected(); n > 0 {
				counts[name] = n
			}
			return nil
		}
		// Copies of the name, email and CRM id inside stored JSON: exact
		// string values only (a longer text that contains the name is
		// someone else's), replaced by the pseudonym.
		if _, err := tx.Exec(ctx, `SELECT set_config('rallye.erasure', 'on', true)`); err != nil {
			return fmt.Errorf("erase: %w", err)
		}
		var needles []string
		for _, v := range []string{who.name, who.email, who.crm} {
			if v != "" && !slices.Contains(needles, v) {
				needles = append(needles, v)
			}
		}
		for _, c := range jsonColumns {
			for _, v := range needles {
				if err := exec(c.table+"."+c.column, `UPDATE `+c.table+` SET `+c.column+` = replace(`+c.column+`::text,
						to_jsonb($3::text)::text, to_jsonb($4::text)::text)::jsonb
					WHERE tenant_id = $1 AND $2::uuid IS NOT NULL AND strpos(`+c.column+`::text, to_jsonb($3::text)::text) > 0`,
					v, ErasedName); err != nil {
					return err
				}
			}
		}
		steps := []struct{ name, sql string }{
			{"users", `UPDATE users SET display_name = '` + ErasedName + `', email = 'erased-' || id || '@erased.invalid',
				external_id = NULL, time_zone = '', hire_date = NULL, active = false, erased_at = now(), updated_at = now()
				WHERE tenant_id = $1 AND id = $2`},
			{"team_members", `DELETE FROM team_members WHERE tenant_id = $1 AND user_id = $2`},
			// Events stay for the company's and teams' totals (their roll-ups
			// are untouched), detached from the person.
			{"events", `UPDATE events SET user_id = NULL WHERE tenant_id = $1 AND user_id = $2`},
			{"event_versions", `UPDATE event_versions SET user_id = NULL, rep_external_id = NULL
				WHERE tenant_id = $1 AND (user_id = $2 OR ($3 <> '' AND rep_external_id = $3))`},
			{"parked_events", `DELETE FROM parked_events WHERE tenant_id = $1 AND $2::uuid IS NOT NULL AND $3 <> '' AND rep_external_id = $3`},
			// Their own KPI values, targets and alerts.
			{"kpi_sums", `DELETE FROM kpi_sums WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			{"kpi_values", `DELETE FROM kpi_values WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			{"kpi_keys", `DELETE FROM kpi_keys WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			{"kpi_scope_since", `DELETE FROM kpi_scope_since WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			{"kpi_alerts", `DELETE FROM kpi_alerts WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			{"kpi_targets", `DELETE FROM kpi_targets WHERE tenant_id = $1 AND scope_kind = 2 AND scope_id = $2`},
			// Free texts by or about them.
			{"kudos", `UPDATE kudos SET message = '' WHERE tenant_id = $1 AND (sender_id = $2 OR recipient_id = $2) AND message <> ''`},
			{"mission_submissions", `UPDATE mission_submissions SET evidence_url = '', answer = '', review_note = ''
				WHERE tenant_id = $1 AND user_id = $2`},
			{"redemptions", `UPDATE redemptions SET note = '' WHERE tenant_id = $1 AND user_id = $2 AND note <> ''`},
		}
		for _, st := range steps {
			var args []any
			if strings.Contains(st.sql, "$3") {
				args = append(args, who.crm)
			}
			if err := exec(st.name, st.sql, args...); err != nil {
				return err
			}
		}
		// Their rows on every board; the live copies are rebuilt after
		// the commit.
		rows, err := tx.Query(ctx, `DELETE FROM board_scores WHERE tenant_id = $1 AND member_id = $2 RETURNING board_id`, p.TenantID, userID)
		if err != nil {
			return fmt.Errorf("erase (boards): %w", err)
		}
		boards, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("erase (boards): %w", err)
		}
		if len(boards) > 0 {
			counts["board_scores"] = len(boards)
		}
		req = Request{ID: uuid.New(), Kind: "erasure", SubjectID: userID, RequestedBy: p.UserID, Reason: reason, Summary: counts, At: s.d.Now()}
		return record(ctx, tx, p.TenantID, req)
	})
	if err != nil {
		return Request{}, err
	}
	if s.d.Forget != nil {
		s.d.Forget(p.TenantID, userID)
	}
	if s.d.Boards != nil {
		for _, b := range boards {
			// A failed rebuild leaves the person's last live score in Redis
			// until the board's next rebuild (a repair, a restart of Redis,
			// `rallye leaderboard rebuild`): logged loudly.
			if _, err := s.d.Boards.Rebuild(ctx, p.TenantID, b); err != nil {
				s.d.Log.ErrorContext(ctx, "board not rebuilt after an erasure: run rallye leaderboard rebuild",
					"tenant_id", p.TenantID, "board_id", b, "error", err)
			}
		}
	}
	return req, nil
}
