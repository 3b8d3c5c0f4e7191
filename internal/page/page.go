// Package page implements keyset pagination: list calls return an opaque
// token naming the last object of a page, and the next call resumes after it.
package page

import (
	"encoding/base64"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/rallye"
)

// Default and maximum page sizes of list calls.
const (
	DefaultSize = 100
	MaxSize     = 500
)

// Size returns the effective page size for a requested one.
func Size(requested int32) int {
	switch {
	case requested <= 0:
		return DefaultSize
	case requested > MaxSize:
		return MaxSize
	}
	return int(requested)
}

// Cursor is the decoded position: list objects after After (uuid.Nil for the
// first page).
type Cursor struct {
	After uuid.UUID
}

// Decode parses a page token; an empty token is the first page.
func Decode(token string) (Cursor, error) {
	if token == "" {
		return Cursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != 16 {
		return Cursor{}, rallye.Invalid("page_token", "is not a token returned by this list")
	}
	id, _ := uuid.FromBytes(b)
	return Cursor{After: id}, nil
}

// Next returns the token of the page after the one ending with last, or ""
// when the page was not full (there is nothing after it).
func Next(last uuid.UUID, got, size int) string {
	if got < size {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(last[:])
}
