package rallye

import (
	"context"
	"slices"

	"github.com/google/uuid"
)

// Role is what a principal may do inside its company.
type Role string

// Roles. Integration is carried only by API keys.
const (
	RoleRep         Role = "rep"
	RoleManager     Role = "manager"
	RoleHR          Role = "hr"
	RoleAdmin       Role = "admin"
	RoleIntegration Role = "integration"
)

// PersonRoles are the roles a person (as opposed to an API key) may hold.
var PersonRoles = []Role{RoleRep, RoleManager, RoleHR, RoleAdmin}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleRep, RoleManager, RoleHR, RoleAdmin, RoleIntegration:
		return true
	}
	return false
}

// Principal is who makes a request: a person of a company or one of its API
// keys. Every tenant-scoped operation takes the tenant from here, never from
// the request body.
type Principal struct {
	TenantID uuid.UUID
	// UserID is the person, uuid.Nil for an API key.
	UserID uuid.UUID
	// APIKeyID is the key, uuid.Nil for a person.
	APIKeyID uuid.UUID
	// Roles are the effective roles (for a person: those in the token that the
	// person still holds).
	Roles []Role
}

// Has reports whether the principal holds any of the roles.
func (p Principal) Has(roles ...Role) bool {
	for _, r := range roles {
		if slices.Contains(p.Roles, r) {
			return true
		}
	}
	return false
}

// IsPerson reports whether the principal is a person rather than an API key.
func (p Principal) IsPerson() bool { return p.UserID != uuid.Nil }

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of an authenticated request.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// MustPrincipal returns the principal or an Unauthenticated error, for code
// that runs behind the authentication interceptor.
func MustPrincipal(ctx context.Context) (Principal, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return Principal{}, Errorf(CodeUnauthenticated, "authentication required")
	}
	return p, nil
}
