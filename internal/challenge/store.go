package challenge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

const challengeColumns = `tenant_id, id, coalesce(template_key, ''), definition, state, team_ids, user_ids,
	starts_at, ends_at, time_zone, version, coalesce(created_by, '00000000-0000-0000-0000-000000000000'),
	created_at, updated_at, published_at, started_at, ended_at, finalized_at, cancelled_at, boards_at,
	holdout_share, coalesce(holdout_seed, 0), holdout_user_ids`

func scanChallenge(r pgx.Row) (*Challenge, error) {
	c := &Challenge{}
	var def []byte
	var starts, ends, published, started, ended, finalized, cancelled, boards *time.Time
	err := r.Scan(&c.TenantID, &c.ID, &c.TemplateKey, &def, &c.State, &c.TeamIDs, &c.UserIDs,
		&starts, &ends, &c.TimeZone, &c.Version, &c.CreatedBy, &c.CreatedAt, &c.UpdatedAt,
		&published, &started, &ended, &finalized, &cancelled, &boards,
		&c.HoldoutShare, &c.HoldoutSeed, &c.HeldOut)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(def, &c.Definition); err != nil {
		return nil, fmt.Errorf("challenge definition: %w", err)
	}
	for _, t := range []struct {
		src *time.Time
		dst *time.Time
	}{{starts, &c.StartsAt}, {ends, &c.EndsAt}, {published, &c.PublishedAt}, {started, &c.StartedAt},
		{ended, &c.EndedAt}, {finalized, &c.FinalizedAt}, {cancelled, &c.CancelledAt}, {boards, &c.boardsAt}} {
		if t.src != nil {
			*t.dst = *t.src
		}
	}
	return c, nil
}

// lockMode says how a read locks the challenge row.
type lockMode string

const (
	noLock     lockMode = ""
	shareLock  lockMode = " FOR SHARE"
	updateLock lockMode = " FOR UPDATE"
)

// getChallenge reads a challenge with its missions. CodeNotFound when it
// does not exist in the company.
func getChallenge(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, lock lockMode) (*Challenge, error) {
	c, err := scanChallenge(tx.QueryRow(ctx, `SELECT `+challengeColumns+` FROM challenges
		WHERE tenant_id = $1 AND id = $2`+string(lock), tenantID, id))
	if postgres.IsNoRows(err) {
		return nil, rallye.NotFound("challenge")
	}
	if err != nil {
		return nil, fmt.Errorf("read challenge: %w", err)
	}
	return c, loadMissions(ctx, tx, []*Challenge{c})
}

// loadMissions fills the missions of challenges, in order.
func loadMissions(ctx context.Context, tx pgx.Tx, cs []*Challenge) error {
	if len(cs) == 0 {
		return nil
	}
	byID := map[uuid.UUID]*Challenge{}
	ids := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		byID[c.ID] = c
		ids[i] = c.ID
		c.Missions = c.Missions[:0]
	}
	rows, err := tx.Query(ctx, `SELECT challenge_id, id, definition FROM challenge_missions
		WHERE tenant_id = $1 AND challenge_id = ANY($2) ORDER BY challenge_id, position`, cs[0].TenantID, ids)
	if err != nil {
		return fmt.Errorf("read missions: %w", err)
	}
	var cid uuid.UUID
	var m MissionInfo
	var def []byte
	_, err = pgx.ForEachRow(rows, []any{&cid, &m.ID, &def}, func() error {
		mi := MissionInfo{ID: m.ID}
		if err := json.Unmarshal(def, &mi.Mission); err != nil {
			return fmt.Errorf("mission definition: %w", err)
		}
		byID[cid].Missions = append(byID[cid].Missions, mi)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read missions: %w", err)
	}
	return nil
}

// storedDefinition is the definition without its missions (they have a
// table of their own).
func storedDefinition(d Definition) ([]byte, error) {
	d.Missions = []Mission{}
	return json.Marshal(d)
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// insertChallenge stores a new draft and its missions.
func insertChallenge(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	def, err := storedDefinition(c.Definition)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO challenges (tenant_id, id, template_key, kind, definition, state, team_ids, user_ids,
			starts_at, ends_at, time_zone, event_types, created_by, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)`,
		c.TenantID, c.ID, nullString(c.TemplateKey), c.Definition.Kind, def, c.State, c.TeamIDs, c.UserIDs,
		nullTime(c.StartsAt), nullTime(c.EndsAt), c.TimeZone, []string{}, nullID(c.CreatedBy), c.CreatedAt)
	if err != nil {
		return fmt.Errorf("insert challenge: %w", err)
	}
	return replaceMissions(ctx, tx, c)
}

// replaceMissions writes a draft's missions, keeping the ids of missions
// whose key stays.
func replaceMissions(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	rows, err := tx.Query(ctx, `SELECT key, id FROM challenge_missions WHERE tenant_id = $1 AND challenge_id = $2`, c.TenantID, c.ID)
	if err != nil {
		return fmt.Errorf("read missions: %w", err)
	}
	existing := map[string]uuid.UUID{}
	var k string
	var id uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&k, &id}, func() error { existing[k] = id; return nil }); err != nil {
		return fmt.Errorf("read missions: %w", err)
	}
	keep := make([]uuid.UUID, 0, len(c.Missions))
	for i := range c.Missions {
		if id, ok := existing[c.Missions[i].Key]; ok {
			c.Missions[i].ID = id
		} else if c.Missions[i].ID == uuid.Nil {
			c.Missions[i].ID = newID()
		}
		keep = append(keep, c.Missions[i].ID)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM challenge_missions WHERE tenant_id = $1 AND challenge_id = $2 AND NOT (id = ANY($3))`,
		c.TenantID, c.ID, keep); err != nil {
		return fmt.Errorf("delete missions: %w", err)
	}
	for i, m := range c.Missions {
		def, err := json.Marshal(m.Mission)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO challenge_missions (tenant_id, challenge_id, id, position, key, definition)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, challenge_id, id) DO UPDATE SET position = excluded.position, key = excluded.key,
				definition = excluded.definition`,
			c.TenantID, c.ID, m.ID, i, m.Key, def); err != nil {
			return fmt.Errorf("write mission: %w", err)
		}
	}
	return nil
}

// updateChallenge stores a changed definition, scope and window.
func updateChallenge(ctx context.Context, tx pgx.Tx, c *Challenge, now time.Time) error {
	def, err := storedDefinition(c.Definition)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE challenges SET definition = $3, kind = $4, team_ids = $5, user_ids = $6,
			starts_at = $7, ends_at = $8, version = $9, updated_at = $10
		WHERE tenant_id = $1 AND id = $2`,
		c.TenantID, c.ID, def, c.Definition.Kind, c.TeamIDs, c.UserIDs, nullTime(c.StartsAt), nullTime(c.EndsAt), c.Version, now)
	if err != nil {
		return fmt.Errorf("update challenge: %w", err)
	}
	c.UpdatedAt = now
	return nil
}
