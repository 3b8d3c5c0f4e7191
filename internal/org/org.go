// Package org is a company's organisation: the tenant itself, its teams (a
// tree of regions, segments and squads) and its people with their roles and
// team memberships.
package org

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Locale is the language a person reads Rallye in.
type Locale string

// Supported locales.
const (
	LocaleFR Locale = "fr"
	LocaleEN Locale = "en"
)

// Valid reports whether l is supported.
func (l Locale) Valid() bool { return l == LocaleFR || l == LocaleEN }

// Tenant is a company.
type Tenant struct {
	ID            uuid.UUID
	Name          string
	Slug          string
	TimeZone      string
	DefaultLocale Locale
	// Currency (ISO 4217) in which money KPIs are computed; events in other
	// currencies are refused.
	Currency  string
	CreatedAt time.Time
}

// Location returns the company's time zone.
func (t Tenant) Location() *time.Location {
	loc, err := time.LoadLocation(t.TimeZone)
	if err != nil {
		return time.UTC // time zones are checked when set; unreachable
	}
	return loc
}

// Team is a group of people. ParentID is uuid.Nil for a top-level team.
type Team struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	Name       string
	ParentID   uuid.UUID
	ExternalID string
	Active     bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// User is a person of the company.
type User struct {
	TenantID    uuid.UUID
	ID          uuid.UUID
	DisplayName string
	Email       string
	Locale      Locale
	// TimeZone is "" when the person follows the company's.
	TimeZone   string
	ExternalID string
	Roles      []rallye.Role
	TeamIDs    []uuid.UUID
	// HireDate is the day the person started (a civil date at midnight UTC);
	// zero when unknown.
	HireDate  time.Time
	Active    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// UserInput is what a person is created with.
type UserInput struct {
	DisplayName string
	Email       string
	Locale      Locale
	TimeZone    string
	ExternalID  string
	Roles       []rallye.Role
	TeamIDs     []uuid.UUID
	// HireDate is the day the person started (midnight UTC); zero: unknown.
	HireDate time.Time
}

// Hire dates Rallye accepts: earlier or later ones are typing errors.
var (
	MinHireDate = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxHireDate = time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)
)

// Service is the organisation's use cases.
type Service struct {
	db *postgres.DB
	// Forget is called after a person's roles or status changed, so that
	// cached credentials are dropped at once on this instance.
	Forget func(tenantID, userID uuid.UUID)
	// PeopleArrived is called inside the transaction that created or
	// imported people, or gave someone a CRM id, with those CRM ids: what
	// waited for them (events parked for an unknown rep_external_id) is
	// taken in with them, or not at all. Nil when nothing waits.
	PeopleArrived func(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, externalIDs []string) error
}

// arrived calls PeopleArrived for the non-empty CRM ids.
func (s *Service) arrived(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, externalIDs ...string) error {
	ids := externalIDs[:0:0]
	for _, id := range externalIDs {
		if id != "" {
			ids = append(ids, id)
		}
	}
	if s.PeopleArrived == nil || len(ids) == 0 {
		return nil
	}
	if err := s.PeopleArrived(ctx, tx, tenantID, ids); err != nil {
		return fmt.Errorf("take in what waited for %v: %w", ids, err)
	}
	return nil
}

// NewService returns the organisation service.
func NewService(db *postgres.DB) *Service {
	return &Service{db: db, Forget: func(uuid.UUID, uuid.UUID) {}}
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

func checkTimeZone(field, tz string) error {
	if tz == "" {
		return nil
	}
	if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
		return rallye.Invalid(field, "%q is not an IANA time zone such as Europe/Paris", tz)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullableDate maps the zero time (unknown) to NULL.
func nullableDate(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullableID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// requirePerson returns an error when p is an API key, for calls about "me".
func requirePerson(p rallye.Principal) error {
	if !p.IsPerson() {
		return rallye.Errorf(rallye.CodeFailedPrecondition, "this call is for people, not API keys")
	}
	return nil
}
