package postgres

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// RegisterTypes teaches a connection's type map to encode uuid.UUID
// (github.com/google/uuid) straight as PostgreSQL's binary uuid. Without it
// pgx goes through uuid.UUID's driver.Valuer (a string, parsed again),
// which costs a third of the CPU of batch writes.
func RegisterTypes(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapUUID}, m.TryWrapEncodePlanFuncs...)
}

// uuidValue is a uuid.UUID as the uuid codec takes it.
type uuidValue uuid.UUID

func (u uuidValue) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: u, Valid: true}, nil }

type wrapUUIDEncodePlan struct{ next pgtype.EncodePlan }

func (p *wrapUUIDEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *wrapUUIDEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(uuidValue(value.(uuid.UUID)), buf)
}

// uuidPointer is a *uuid.UUID, nil being NULL.
type uuidPointer struct{ u *uuid.UUID }

func (p uuidPointer) UUIDValue() (pgtype.UUID, error) {
	if p.u == nil {
		return pgtype.UUID{}, nil
	}
	return pgtype.UUID{Bytes: *p.u, Valid: true}, nil
}

type wrapUUIDPointerEncodePlan struct{ next pgtype.EncodePlan }

func (p *wrapUUIDPointerEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *wrapUUIDPointerEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(uuidPointer{value.(*uuid.UUID)}, buf)
}

func tryWrapUUID(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	switch v := value.(type) {
	case uuid.UUID:
		return &wrapUUIDEncodePlan{}, uuidValue(v), true
	case *uuid.UUID:
		return &wrapUUIDPointerEncodePlan{}, uuidPointer{v}, true
	}
	return nil, nil, false
}
