package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/rallyehq/rallye/migrations"
)

// migrationLock is the advisory lock key that serialises migrations between
// instances starting together ("rallye" in ASCII).
const migrationLock = 0x72616c6c7965

// Migrate applies Rallye's schema migrations and River's job-queue schema,
// holding a session advisory lock so that two instances starting together
// take turns (the second finds nothing left to do).
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	// The lock lives on a connection of its own: holding a pooled one while
	// waiting could starve the pool the migrations themselves need.
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect for migration lock: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock))
	}()

	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration.String())
	}

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("load job queue migrations: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("apply job queue migrations: %w", err)
	}
	for _, v := range res.Versions {
		log.Info("job queue migration applied", "version", v.Version)
	}
	return nil
}

// SchemaHash identifies the schema Migrate produces: the migration files and
// River's migration versions. Test templates are keyed on it.
func SchemaHash() (string, error) {
	h := sha256.New()
	entries, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(entries)
	for _, name := range entries {
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return "", err
		}
		h.Write([]byte(name))
		h.Write(b)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		return "", err
	}
	for _, m := range migrator.AllVersions() {
		h.Write([]byte("river:" + strconv.Itoa(m.Version) + m.SQLUp))
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// EnsureDatabase creates the database named in url when it does not exist,
// connecting to the server's "postgres" database with the same credentials.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres at %s does not answer: %w", redact(cfg), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil && !IsUniqueViolation(err, "") && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

func isDuplicateDatabase(err error) bool { return isViolation(err, "42P04", "") }

// RowSecurityEnforced reports whether the connected role is subject to
// row-level security (superusers and BYPASSRLS roles are not).
func RowSecurityEnforced(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var super, bypass bool
	err := pool.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass)
	if err != nil {
		return false, fmt.Errorf("read role attributes: %w", err)
	}
	return !super && !bypass, nil
}
