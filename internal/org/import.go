package org

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// MaxImportRows bounds one import call.
const MaxImportRows = 1000

// RowError reports a rejected row of a batch.
type RowError struct {
	Index   int
	Field   string
	Message string
}

// ImportResult counts what an import did.
type ImportResult struct {
	Created, Updated, Unchanged int
	Rejected                    []RowError
}

// ImportRow is one row of an import: the person, or the reason the caller
// already rejected it (Invalid != nil) so that the row is reported in order.
type ImportRow struct {
	User    UserInput
	Invalid *RowError
}

// ImportUsers creates or updates people keyed on their external CRM id, in
// one transaction where each row is a savepoint: a bad row is reported and
// the others are written. Replaying an import changes nothing.
func (s *Service) ImportUsers(ctx context.Context, p rallye.Principal, rows []ImportRow) (ImportResult, error) {
	if len(rows) == 0 || len(rows) > MaxImportRows {
		return ImportResult{}, rallye.Invalid("users", "send between 1 and %d rows", MaxImportRows)
	}
	var res ImportResult
	var changedIDs []User
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		res, changedIDs = ImportResult{}, nil
		var arrived []string
		for i, row := range rows {
			if row.Invalid != nil {
				res.Rejected = append(res.Rejected, *row.Invalid)
				continue
			}
			outcome, user, err := importRow(ctx, tx, p, row.User, s)
			if postgres.IsUniqueViolation(errorsCause(err), "users_external_id_key") {
				// A concurrent import created this person between our read
				// and our insert: the row now exists, so update it instead.
				outcome, user, err = importRow(ctx, tx, p, row.User, s)
			}
			if e, ok := rallye.AsError(err); ok && e.Code != rallye.CodeInternal {
				res.Rejected = append(res.Rejected, RowError{Index: i, Field: e.Field, Message: e.Message})
				continue
			}
			if err != nil {
				return fmt.Errorf("import row %d: %w", i, err)
			}
			switch outcome {
			case created:
				res.Created++
				arrived = append(arrived, user.ExternalID)
			case updated:
				res.Updated++
				changedIDs = append(changedIDs, user)
			default:
				res.Unchanged++
			}
		}
		return s.arrived(ctx, tx, p.TenantID, arrived...)
	})
	if err != nil {
		return ImportResult{}, err
	}
	for _, u := range changedIDs {
		s.Forget(u.TenantID, u.ID)
	}
	return res, nil
}

// errorsCause returns the cause of a domain error, so that the retry above
// sees the PostgreSQL error behind userWriteError's translation.
func errorsCause(err error) error {
	if e, ok := rallye.AsError(err); ok && e.Cause != nil {
		return e.Cause
	}
	return err
}

type importOutcome int

const (
	unchanged importOutcome = iota
	created
	updated
)

func importRow(ctx context.Context, outer pgx.Tx, p rallye.Principal, in UserInput, s *Service) (importOutcome, User, error) {
	if in.ExternalID == "" {
		return 0, User{}, rallye.Invalid("external_id", "is required: it is the import key")
	}
	if err := checkUserInput(in); err != nil {
		return 0, User{}, err
	}
	tx, err := outer.Begin(ctx) // savepoint: a failed row leaves the others intact
	if err != nil {
		return 0, User{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := checkTeams(ctx, tx, p.TenantID, in.TeamIDs); err != nil {
		return 0, User{}, err
	}
	current, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u
		WHERE u.tenant_id = $1 AND u.external_id = $2 FOR UPDATE`, p.TenantID, in.ExternalID))
	var outcome importOutcome
	var user User
	switch {
	case postgres.IsNoRows(err):
		user, err = insertUser(ctx, tx, p.TenantID, newID(), in)
		outcome = created
	case err != nil:
		return 0, User{}, err
	default:
		var changed bool
		user, changed, err = s.writeUser(ctx, tx, current, in)
		if changed {
			outcome = updated
		}
	}
	if err != nil {
		return 0, User{}, err
	}
	return outcome, user, tx.Commit(ctx)
}
