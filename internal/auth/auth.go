// Package auth turns the credentials of a request (a bearer JWT or a company
// API key) into a rallye.Principal, mints development tokens, and manages the
// company API keys.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/rallyehq/rallye/internal/rallye"
)

// Claims are the claims of a Rallye access token: the standard ones (sub is
// the user id) plus the company and the roles.
type Claims struct {
	TenantID string   `json:"tenant_id"`
	Roles    []string `json:"roles"`
	jwt.RegisteredClaims
}

// Access is a person's current standing, read from the database.
type Access struct {
	Active bool
	Roles  []rallye.Role
}

// People reads a person's current standing. It returns a rallye error with
// CodeNotFound for an unknown person.
type People interface {
	Access(ctx context.Context, tenantID, userID uuid.UUID) (Access, error)
}

// Options configures an Authenticator.
type Options struct {
	// Secret verifies HS256 tokens (and signs development tokens).
	Secret []byte
	// JWKS verifies RS256 and ES256 tokens; nil disables them.
	JWKS     keyfunc.Keyfunc
	Issuer   string
	Audience string
	// CacheTTL bounds how stale a person's or key's cached standing may be;
	// zero disables the cache.
	CacheTTL time.Duration
}

type userKey struct{ tenant, user uuid.UUID }

// Authenticator verifies credentials. The standing of people and keys is
// cached for CacheTTL, so that a hot read path does not query the database on
// every call while deactivation and revocation still take effect quickly.
type Authenticator struct {
	opts   Options
	people People
	keys   *APIKeys
	users  standingCache[userKey, Access]
	apiKey standingCache[[32]byte, APIKey]
	// tokens remembers verified tokens, so that a client calling several
	// times a second is not verified (HMAC or RSA, JSON) every time; the
	// person's standing is still checked on every call.
	tokens standingCache[string, verifiedToken]
	// lookups shares one database read between the concurrent calls that
	// miss the cache for the same key or person: a webhook source sending
	// 50 calls at once when the cache entry expires reads its key once.
	lookups singleflight.Group
}

// lookupTimeout bounds a shared look-up, which outlives the caller that
// started it (the others wait for it too).
const lookupTimeout = 10 * time.Second

// shared runs read once for the concurrent callers asking for key, and
// returns when it is done or ctx is.
func shared[T any](ctx context.Context, g *singleflight.Group, key string, read func(context.Context) (T, error)) (T, error) {
	ch := g.DoChan(key, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		return read(rctx)
	})
	select {
	case res := <-ch:
		v, _ := res.Val.(T)
		return v, res.Err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

type verifiedToken struct {
	tenant, user uuid.UUID
	roles        []string
	expires      time.Time
}

// standingCache is an expiring LRU, or nothing at all when the TTL is zero.
type standingCache[K comparable, V any] struct {
	lru *expirable.LRU[K, V]
}

func newStandingCache[K comparable, V any](size int, ttl time.Duration) standingCache[K, V] {
	if ttl <= 0 {
		return standingCache[K, V]{}
	}
	return standingCache[K, V]{lru: expirable.NewLRU[K, V](size, nil, ttl)}
}

func (c standingCache[K, V]) get(k K) (v V, ok bool) {
	if c.lru == nil {
		return v, false
	}
	return c.lru.Get(k)
}

func (c standingCache[K, V]) add(k K, v V) {
	if c.lru != nil {
		c.lru.Add(k, v)
	}
}

func (c standingCache[K, V]) remove(k K) {
	if c.lru != nil {
		c.lru.Remove(k)
	}
}

// NewAuthenticator returns an Authenticator reading standings from people and
// keys.
func NewAuthenticator(opts Options, people People, keys *APIKeys) *Authenticator {
	a := &Authenticator{
		opts: opts, people: people, keys: keys,
		users:  newStandingCache[userKey, Access](100_000, opts.CacheTTL),
		apiKey: newStandingCache[[32]byte, APIKey](10_000, opts.CacheTTL),
		tokens: newStandingCache[string, verifiedToken](100_000, opts.CacheTTL),
	}
	keys.onRevoke = a.apiKey.remove
	return a
}

var errUnauthenticated = rallye.Errorf(rallye.CodeUnauthenticated, "missing or invalid credentials")

// Authenticate resolves an Authorization header value ("Bearer <token>").
func (a *Authenticator) Authenticate(ctx context.Context, header string) (rallye.Principal, error) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || cred == "" {
		return rallye.Principal{}, errUnauthenticated
	}
	if strings.HasPrefix(cred, APIKeyPrefix) {
		return a.authenticateKey(ctx, cred)
	}
	return a.authenticateToken(ctx, cred)
}

func (a *Authenticator) authenticateKey(ctx context.Context, secret string) (rallye.Principal, error) {
	hash := sha256.Sum256([]byte(secret))
	key, ok := a.apiKey.get(hash)
	if !ok {
		var err error
		key, err = shared(ctx, &a.lookups, "key:"+string(hash[:]), func(ctx context.Context) (APIKey, error) { return a.keys.lookup(ctx, hash) })
		if rallye.ErrorCode(err) == rallye.CodeNotFound {
			return rallye.Principal{}, errUnauthenticated
		}
		if err != nil {
			return rallye.Principal{}, err
		}
		a.apiKey.add(hash, key)
	}
	if key.RevokedAt != nil {
		return rallye.Principal{}, errUnauthenticated
	}
	return rallye.Principal{TenantID: key.TenantID, APIKeyID: key.ID, Roles: key.Roles}, nil
}

func (a *Authenticator) authenticateToken(ctx context.Context, raw string) (rallye.Principal, error) {
	tok, ok := a.tokens.get(raw)
	if !ok || !time.Now().Before(tok.expires) {
		var err error
		if tok, err = a.verify(ctx, raw); err != nil {
			return rallye.Principal{}, err
		}
		a.tokens.add(raw, tok)
	}
	tenantID, userID := tok.tenant, tok.user
	key := userKey{tenantID, userID}
	access, ok := a.users.get(key)
	if !ok {
		var err error
		access, err = shared(ctx, &a.lookups, "person:"+tenantID.String()+userID.String(), func(ctx context.Context) (Access, error) {
			return a.people.Access(ctx, tenantID, userID)
		})
		if rallye.ErrorCode(err) == rallye.CodeNotFound {
			return rallye.Principal{}, errUnauthenticated
		}
		if err != nil {
			return rallye.Principal{}, err
		}
		a.users.add(key, access)
	}
	if !access.Active {
		return rallye.Principal{}, errUnauthenticated
	}
	// A token grants no more than the person holds now: a demoted manager
	// loses manager rights without waiting for the token to expire.
	var roles []rallye.Role
	for _, r := range tok.roles {
		role := rallye.Role(r)
		if slices.Contains(access.Roles, role) && !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	return rallye.Principal{TenantID: tenantID, UserID: userID, Roles: roles}, nil
}

// verify checks a token's signature and claims.
func (a *Authenticator) verify(ctx context.Context, raw string) (verifiedToken, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, a.keyFor,
		jwt.WithValidMethods([]string{"HS256", "RS256", "ES256"}),
		jwt.WithIssuer(a.opts.Issuer),
		jwt.WithAudience(a.opts.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(tokenLeeway),
	)
	if err != nil {
		rallye.Logger(ctx).Debug("token rejected", "reason", err)
		return verifiedToken{}, errUnauthenticated
	}
	tenantID, err1 := uuid.Parse(claims.TenantID)
	userID, err2 := uuid.Parse(claims.Subject)
	if err1 != nil || err2 != nil {
		return verifiedToken{}, errUnauthenticated
	}
	return verifiedToken{tenant: tenantID, user: userID, roles: claims.Roles,
		expires: claims.ExpiresAt.Add(tokenLeeway)}, nil
}

// tokenLeeway absorbs clock skew between the token issuer and Rallye.
const tokenLeeway = 30 * time.Second

func (a *Authenticator) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case "HS256":
		if len(a.opts.Secret) == 0 {
			return nil, errors.New("HS256 tokens are not accepted")
		}
		return a.opts.Secret, nil
	default:
		if a.opts.JWKS == nil {
			return nil, fmt.Errorf("%s tokens are not accepted without a JWKS URL", t.Method.Alg())
		}
		return a.opts.JWKS.Keyfunc(t)
	}
}

// ForgetUser drops a person's cached standing (after a change on this
// instance; other instances see it within the cache lifetime).
func (a *Authenticator) ForgetUser(tenantID, userID uuid.UUID) {
	a.users.remove(userKey{tenantID, userID})
}

// TokenRequest describes a token to mint.
type TokenRequest struct {
	TenantID uuid.UUID
	UserID   uuid.UUID
	Roles    []rallye.Role
	TTL      time.Duration
	Now      time.Time
}

// MintToken signs an HS256 access token. It is for development and for
// deployments that do not use an external identity provider.
func MintToken(secret []byte, issuer, audience string, r TokenRequest) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("no signing secret configured (RALLYE_JWT_SECRET)")
	}
	roles := make([]string, len(r.Roles))
	for i, role := range r.Roles {
		roles[i] = string(role)
	}
	claims := Claims{
		TenantID: r.TenantID.String(),
		Roles:    roles,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   r.UserID.String(),
			Audience:  jwt.ClaimStrings{audience},
			IssuedAt:  jwt.NewNumericDate(r.Now),
			ExpiresAt: jwt.NewNumericDate(r.Now.Add(r.TTL)),
			ID:        uuid.NewString(),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
