package api

import (
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/rallye"
)

// requestTypes returns the input types of every rallye.v1 procedure.
func requestTypes(t *testing.T) []protoreflect.MessageDescriptor {
	t.Helper()
	var out []protoreflect.MessageDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("rallye.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			methods := fd.Services().Get(i).Methods()
			for j := range methods.Len() {
				out = append(out, methods.Get(j).Input())
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatal("no rallye.v1 procedure registered")
	}
	return out
}

// walkFields calls f for every field a client can send, in requests and the
// messages they contain, with its path.
func walkFields(md protoreflect.MessageDescriptor, prefix string, seen map[protoreflect.FullName]bool, f func(path string, fd protoreflect.FieldDescriptor)) {
	if seen[md.FullName()] || strings.HasPrefix(string(md.FullName()), "google.") {
		return
	}
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		path := prefix + string(fd.Name())
		f(path, fd)
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
		}
		if sub != nil {
			walkFields(sub, path+".", seen, f)
		}
	}
}

// TestEveryTimeInputIsBounded: every timestamp and duration a client sends
// has a window in the protos, so a far date is invalid_argument naming the
// field instead of poisoning a computation or breaking a reply.
func TestEveryTimeInputIsBounded(t *testing.T) {
	checked := 0
	for _, md := range requestTypes(t) {
		walkFields(md, string(md.Name())+".", map[protoreflect.FullName]bool{}, func(path string, fd protoreflect.FieldDescriptor) {
			if fd.Message() == nil {
				return
			}
			rules, err := protovalidate.ResolveFieldRules(fd)
			if err != nil {
				t.Fatal(err)
			}
			switch fd.Message().FullName() {
			case "google.protobuf.Timestamp":
				checked++
				tr := rules.GetTimestamp()
				window, _ := proto.GetExtension(tr, rallyev1.E_InServiceWindow).(bool)
				if !window && (tr.GetGte() == nil && tr.GetGt() == nil || tr.GetLt() == nil && tr.GetLte() == nil) {
					t.Errorf("%s: a timestamp input without a window (add (buf.validate.field).timestamp.(in_service_window) = true)", path)
				}
			case "google.protobuf.Duration":
				checked++
				dr := rules.GetDuration()
				if dr.GetGte() == nil && dr.GetGt() == nil || dr.GetLt() == nil && dr.GetLte() == nil {
					t.Errorf("%s: a duration input without both bounds", path)
				}
			}
		})
	}
	if checked < 20 {
		t.Fatalf("only %d time fields found: the walk is broken", checked)
	}
}

// TestEveryPatternIsExplained: a client developer reads what a pattern
// accepts, not the regular expression.
func TestEveryPatternIsExplained(t *testing.T) {
	used := map[string]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("rallye.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Messages().Len() {
			walkFields(fd.Messages().Get(i), "", map[protoreflect.FullName]bool{}, func(path string, f protoreflect.FieldDescriptor) {
				rules, err := protovalidate.ResolveFieldRules(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, sr := range []interface{ GetPattern() string }{rules.GetString(), rules.GetRepeated().GetItems().GetString(),
					rules.GetMap().GetKeys().GetString(), rules.GetMap().GetValues().GetString()} {
					if p := sr.GetPattern(); p != "" {
						used[p] = true
						if _, ok := patternHints[p]; !ok {
							t.Errorf("%s: pattern %s has no entry in patternHints", path, p)
						}
					}
				}
			})
		}
		return true
	})
	for p := range patternHints {
		if !used[p] {
			t.Errorf("patternHints explains %s, which no field uses", p)
		}
	}
}

// TestMaskedPartsSpeakTheSameWords: the rows and masked updates handlers
// validate themselves get the messages the interceptor gives.
func TestMaskedPartsSpeakTheSameWords(t *testing.T) {
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	patch := &rallyev1.UpdateTenantRequest{Tenant: &rallyev1.TenantUpdate{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"default_locale"}}}
	err = checkMasked(v, patch.Tenant, "tenant", patch.UpdateMask.Paths)
	e, ok := rallye.AsError(err)
	if !ok || e.Field != "tenant.default_locale" || e.Message != "is required; use one of LOCALE_FR, LOCALE_EN" {
		t.Fatalf("got %v", err)
	}
	err = checkPart(v, &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "a", En: "a"},
		Missions: []*rallyev1.Mission{{Key: "a", Name: &rallyev1.LocalizedText{Fr: "a", En: "a"}}}}, "definition.", nil)
	if e, ok := rallye.AsError(err); !ok || e.Field != "definition.missions[0].condition" || e.Message != "is required: set one of auto, manual" {
		t.Fatalf("got %v", err)
	}
	err = checkPart(v, &rallyev1.SalesEvent{Source: "crm", ExternalId: "1", Type: "call.logged",
		OccurredAt: timestamppb.New(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC))}, "", nil)
	if e, ok := rallye.AsError(err); !ok || e.Field != "occurred_at" || !strings.Contains(e.Message, "2000-01-01") {
		t.Fatalf("got %v", err)
	}
}

// TestDefaultRequestLimitFitsAFullBatch sizes the default limit: 1,000
// events (the most a batch holds) with every field set, strings at their
// maximum length and five attributes of maximum size fit in JSON, the
// larger encoding.
func TestDefaultRequestLimitFitsAFullBatch(t *testing.T) {
	ev := fullEvent(5)
	batch := &rallyev1.IngestEventsRequest{}
	for range 1000 {
		batch.Events = append(batch.Events, ev)
	}
	binary, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	text, err := protojson.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1,000 full events: %.2f MiB in JSON, %.2f MiB in binary; limit %s",
		float64(len(text))/(1<<20), float64(len(binary))/(1<<20), byteSize(config.DefaultMaxRequestBytes))
	if len(text) > config.DefaultMaxRequestBytes || len(binary) > config.DefaultMaxRequestBytes {
		t.Fatalf("a full batch does not fit the default limit of %d bytes", config.DefaultMaxRequestBytes)
	}
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(ev); err != nil {
		t.Fatalf("the full event is not valid, so it sizes nothing: %v", err)
	}
}

// fullEvent is a valid event with every field set and every string at the
// maximum length its rule allows (ASCII), with attrs attributes of maximum
// size.
func fullEvent(attrs int) *rallyev1.SalesEvent {
	ev := &rallyev1.SalesEvent{}
	m := ev.ProtoReflect()
	fields := m.Descriptor().Fields()
	at := timestamppb.New(time.Date(2026, 11, 25, 13, 45, 12, 123456789, time.UTC))
	score := int32(10)
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.StringKind || fd.IsMap() {
			continue
		}
		rules, _ := protovalidate.ResolveFieldRules(fd)
		if n := rules.GetString().GetMaxLen(); n > 0 {
			m.Set(fd, protoreflect.ValueOfString(strings.Repeat("x", int(n))))
		}
	}
	ev.Source = strings.Repeat("s", 64)
	ev.Type = "opportunity.stage_changed"
	ev.RepId = "5f0c7a4e-8a8a-4d7e-9b0e-2f6f1d3c9a11"
	ev.DealKind = "renewal"
	ev.Revision = 1732542312123
	ev.OccurredAt, ev.OpportunityCreatedAt, ev.StageEnteredAt, ev.LeadCreatedAt, ev.TicketOpenedAt = at, at, at, at, at
	ev.Amount = &rallyev1.Money{MinorUnits: 123456789012, Currency: "EUR"}
	ev.GrossMargin = &rallyev1.Money{MinorUnits: 12345678901, Currency: "EUR"}
	ev.Score = &score
	ev.DiscoveryCompleted = true
	ev.Attributes = map[string]string{}
	for i := range attrs {
		ev.Attributes[strings.Repeat("k", 63)+string(rune('a'+i))] = strings.Repeat("v", 200)
	}
	return ev
}
