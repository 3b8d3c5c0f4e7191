package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

type bundle struct {
	org   *org.Service
	keys  *auth.APIKeys
	authn *auth.Authenticator
	op    rallye.Principal
	rep   org.User
}

func setup(t *testing.T, jwks keyfunc.Keyfunc) bundle {
	t.Helper()
	db := testutil.DB(t)
	b := bundle{org: org.NewService(db), keys: auth.NewAPIKeys(db)}
	b.authn = auth.NewAuthenticator(auth.Options{Secret: secret, JWKS: jwks, Issuer: "rallye", Audience: "rallye", CacheTTL: time.Minute}, b.org, b.keys)
	b.org.Forget = b.authn.ForgetUser
	tenant, admin, err := b.org.CreateTenant(context.Background(), org.NewTenant{Name: "Acme", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b.op = rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	b.rep, err = b.org.CreateUser(context.Background(), b.op, org.CreateUserRequest{User: org.UserInput{
		DisplayName: "Rep", Email: "rep@acme.test", Locale: org.LocaleFR, Roles: []rallye.Role{rallye.RoleRep, rallye.RoleManager}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func claims(u org.User, roles ...string) auth.Claims {
	return auth.Claims{TenantID: u.TenantID.String(), Roles: roles, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "rallye", Subject: u.ID.String(), Audience: jwt.ClaimStrings{"rallye"},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c auth.Claims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwksServer serves the public halves of an RSA and an EC key, as an
// identity provider would.
func jwksServer(t *testing.T, rsaKey *rsa.PrivateKey, ecKey *ecdsa.PrivateKey) keyfunc.Keyfunc {
	t.Helper()
	ecPub, err := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
			"n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(ecPub[1:33]), "y": b64(ecPub[33:])},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k, err := keyfunc.NewDefaultCtx(ctx, []string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokens(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	b := setup(t, jwksServer(t, rsaKey, ecKey))
	ctx := context.Background()

	expired := claims(b.rep, "rep")
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	noExpiry := claims(b.rep, "rep")
	noExpiry.ExpiresAt = nil
	otherAudience := claims(b.rep, "rep")
	otherAudience.Audience = jwt.ClaimStrings{"someone-else"}
	unknownPerson := claims(b.rep, "rep")
	unknownPerson.Subject = uuid.NewString()
	otherTenant := claims(b.rep, "rep")
	otherTenant.TenantID = uuid.NewString()

	tests := []struct {
		name   string
		header string
		roles  []rallye.Role // nil: must be rejected
	}{
		{"HS256", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, claims(b.rep, "rep"), ""), []rallye.Role{rallye.RoleRep}},
		{"RS256ViaJWKS", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, claims(b.rep, "rep", "manager"), "rsa-1"), []rallye.Role{rallye.RoleRep, rallye.RoleManager}},
		{"ES256ViaJWKS", "Bearer " + sign(t, jwt.SigningMethodES256, ecKey, claims(b.rep, "manager"), "ec-1"), []rallye.Role{rallye.RoleManager}},
		{"RolesNotHeldAreDropped", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, claims(b.rep, "rep", "admin"), ""), []rallye.Role{rallye.RoleRep}},
		{"ErrRS256UnknownSigner", "Bearer " + sign(t, jwt.SigningMethodRS256, otherRSA, claims(b.rep, "rep"), "rsa-1"), nil},
		{"ErrWrongSecret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-00"), claims(b.rep, "rep"), ""), nil},
		{"ErrAlgNone", "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(b.rep, "rep"), ""), nil},
		{"ErrExpired", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, expired, ""), nil},
		{"ErrNoExpiry", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, noExpiry, ""), nil},
		{"ErrAudience", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, otherAudience, ""), nil},
		{"ErrUnknownPerson", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, unknownPerson, ""), nil},
		{"ErrOtherTenant", "Bearer " + sign(t, jwt.SigningMethodHS256, secret, otherTenant, ""), nil},
		{"ErrNoScheme", sign(t, jwt.SigningMethodHS256, secret, claims(b.rep, "rep"), ""), nil},
		{"ErrEmpty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := b.authn.Authenticate(ctx, tt.header)
			if tt.roles == nil {
				if rallye.ErrorCode(err) != rallye.CodeUnauthenticated {
					t.Fatalf("accepted (%v, %v)", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.TenantID != b.rep.TenantID || p.UserID != b.rep.ID || len(p.Roles) != len(tt.roles) || !p.Has(tt.roles...) {
				t.Fatalf("principal = %+v, want roles %v", p, tt.roles)
			}
		})
	}
}

func TestDeactivatedPersonIsRejected(t *testing.T) {
	b := setup(t, nil)
	ctx := context.Background()
	header := "Bearer " + sign(t, jwt.SigningMethodHS256, secret, claims(b.rep, "rep"), "")
	if _, err := b.authn.Authenticate(ctx, header); err != nil {
		t.Fatal(err)
	}
	if _, err := b.org.DeactivateUser(ctx, b.op, b.rep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.authn.Authenticate(ctx, header); rallye.ErrorCode(err) != rallye.CodeUnauthenticated {
		t.Fatalf("deactivated person still accepted: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	b := setup(t, nil)
	ctx := context.Background()
	key, secret, err := b.keys.Create(ctx, b.op, auth.CreateAPIKeyRequest{Name: "CRM"})
	if err != nil {
		t.Fatal(err)
	}
	if len(key.Roles) != 1 || key.Roles[0] != rallye.RoleIntegration || key.Prefix != secret[:len(key.Prefix)] {
		t.Fatalf("key = %+v", key)
	}
	p, err := b.authn.Authenticate(ctx, "Bearer "+secret)
	if err != nil {
		t.Fatal(err)
	}
	if p.TenantID != b.op.TenantID || p.APIKeyID != key.ID || p.IsPerson() || !p.Has(rallye.RoleIntegration) {
		t.Fatalf("principal = %+v", p)
	}
	if _, err := b.authn.Authenticate(ctx, "Bearer "+secret+"x"); rallye.ErrorCode(err) != rallye.CodeUnauthenticated {
		t.Fatalf("a wrong secret was accepted: %v", err)
	}
	if _, _, err := b.keys.Create(ctx, b.op, auth.CreateAPIKeyRequest{Name: "bad", Roles: []rallye.Role{rallye.RoleRep}}); rallye.ErrorCode(err) != rallye.CodeInvalid {
		t.Fatalf("a rep key was created: %v", err)
	}
	revoked, err := b.keys.Revoke(ctx, b.op, key.ID)
	if err != nil || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	if _, err := b.authn.Authenticate(ctx, "Bearer "+secret); rallye.ErrorCode(err) != rallye.CodeUnauthenticated {
		t.Fatalf("a revoked key was accepted: %v", err)
	}
	if _, err := b.keys.Revoke(ctx, b.op, uuid.New()); rallye.ErrorCode(err) != rallye.CodeNotFound {
		t.Fatalf("revoking an unknown key: %v", err)
	}
}
