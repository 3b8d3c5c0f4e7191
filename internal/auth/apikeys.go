package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// APIKeyPrefix starts every API key secret, so that credentials are told
// apart from JWTs at a glance (and by secret scanners).
const APIKeyPrefix = "rly_"

// APIKey is a company API key, without its secret.
type APIKey struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	Name       string
	Prefix     string
	Roles      []rallye.Role
	CreatedBy  uuid.UUID
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// APIKeys stores API keys. Only a SHA-256 hash of each secret is kept: the
// secrets are 256-bit random strings, so a fast hash is as safe as a slow one.
type APIKeys struct {
	db       *postgres.DB
	onRevoke func(hash [32]byte)
}

// NewAPIKeys returns the API key store.
func NewAPIKeys(db *postgres.DB) *APIKeys {
	return &APIKeys{db: db, onRevoke: func([32]byte) {}}
}

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newSecret() (secret string, hash [32]byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	secret = APIKeyPrefix + strings.ToLower(secretEncoding.EncodeToString(b))
	return secret, sha256.Sum256([]byte(secret))
}

const apiKeyColumns = `tenant_id, id, name, prefix, roles, coalesce(created_by, '00000000-0000-0000-0000-000000000000'), created_at, last_used_at, revoked_at`

func scanAPIKey(row pgx.Row) (APIKey, error) {
	var k APIKey
	var roles []string
	err := row.Scan(&k.TenantID, &k.ID, &k.Name, &k.Prefix, &roles, &k.CreatedBy, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	for _, r := range roles {
		k.Roles = append(k.Roles, rallye.Role(r))
	}
	return k, err
}

// CreateAPIKeyRequest names a new key and its roles (admin and/or
// integration; none means integration).
type CreateAPIKeyRequest struct {
	Name  string
	Roles []rallye.Role
}

// Create creates a key for the caller's company and returns it with its
// secret, which is not stored and cannot be shown again.
func (s *APIKeys) Create(ctx context.Context, p rallye.Principal, req CreateAPIKeyRequest) (APIKey, string, error) {
	roles := []string{}
	for _, r := range req.Roles {
		if r != rallye.RoleAdmin && r != rallye.RoleIntegration {
			return APIKey{}, "", rallye.Invalid("roles", "an API key may carry only the admin and integration roles")
		}
		roles = append(roles, string(r))
	}
	if len(roles) == 0 {
		roles = []string{string(rallye.RoleIntegration)}
	}
	secret, hash := newSecret()
	var key APIKey
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var createdBy *uuid.UUID
		if p.IsPerson() {
			createdBy = &p.UserID
		}
		var err error
		key, err = scanAPIKey(tx.QueryRow(ctx, `
			INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, roles, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING `+apiKeyColumns,
			p.TenantID, uuid.Must(uuid.NewV7()), req.Name, secret[:len(APIKeyPrefix)+8], hash[:], roles, createdBy))
		return err
	})
	if err != nil {
		return APIKey{}, "", fmt.Errorf("insert api key: %w", err)
	}
	return key, secret, nil
}

// List returns the company's keys, newest first.
func (s *APIKeys) List(ctx context.Context, p rallye.Principal, size int, cursor page.Cursor) ([]APIKey, error) {
	var keys []APIKey
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		after := cursor.After
		if after == uuid.Nil {
			after = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
			WHERE tenant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, p.TenantID, after, size)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanAPIKey(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// Revoke disables a key. Revoking a revoked key changes nothing.
func (s *APIKeys) Revoke(ctx context.Context, p rallye.Principal, id uuid.UUID) (APIKey, error) {
	var key APIKey
	var hash []byte
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE tenant_id = $1 AND id = $2 RETURNING secret_hash`, p.TenantID, id).Scan(&hash)
		if postgres.IsNoRows(err) {
			return rallye.NotFound("API key")
		}
		if err != nil {
			return err
		}
		key, err = scanAPIKey(tx.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE tenant_id = $1 AND id = $2`, p.TenantID, id))
		return err
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke api key: %w", err)
	}
	s.onRevoke([32]byte(hash))
	return key, nil
}

// lookup finds a key by the hash of its secret and records its use.
func (s *APIKeys) lookup(ctx context.Context, hash [32]byte) (APIKey, error) {
	var key APIKey
	// Across tenants: the secret is all the caller presented, so the company
	// is only known once the key is found.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		var err error
		key, err = scanAPIKey(tx.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE secret_hash = $1`, hash[:]))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("API key")
		}
		if err != nil {
			return err
		}
		// The use is recorded unless another call is recording it: calls of
		// one key (a busy webhook) never queue on its row.
		var used *time.Time
		err = tx.QueryRow(ctx, `UPDATE api_keys SET last_used_at = now()
			WHERE id IN (SELECT id FROM api_keys WHERE secret_hash = $1 FOR UPDATE SKIP LOCKED) RETURNING last_used_at`, hash[:]).Scan(&used)
		if postgres.IsNoRows(err) {
			return nil
		}
		key.LastUsedAt = used
		return err
	})
	return key, err
}

// CreateForOperator creates an admin key for a company from an operator
// command (no principal yet: the company was just created).
func (s *APIKeys) CreateForOperator(ctx context.Context, tenantID uuid.UUID, name string) (APIKey, string, error) {
	return s.Create(ctx, rallye.Principal{TenantID: tenantID}, CreateAPIKeyRequest{
		Name: name, Roles: []rallye.Role{rallye.RoleAdmin, rallye.RoleIntegration},
	})
}
