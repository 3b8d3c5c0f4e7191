package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// IsNoRows reports whether err says a query returned no row.
func IsNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// IsUniqueViolation reports whether err is a unique violation of the named
// constraint or index ("" matches any).
func IsUniqueViolation(err error, constraint string) bool {
	return isViolation(err, "23505", constraint)
}

// IsForeignKeyViolation reports whether err is a foreign-key violation of the
// named constraint ("" matches any).
func IsForeignKeyViolation(err error, constraint string) bool {
	return isViolation(err, "23503", constraint)
}

// IsCheckViolation reports whether err is a check-constraint violation of the
// named constraint ("" matches any).
func IsCheckViolation(err error, constraint string) bool {
	return isViolation(err, "23514", constraint)
}

func isViolation(err error, code, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}
