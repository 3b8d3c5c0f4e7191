package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rallyehq/rallye/internal/rallye"
)

// validating checks every request message against the rules written in the
// protos (protovalidate) before the handler runs, and answers
// invalid_argument naming each field, in words from violationMessage.
type validating struct {
	v protovalidate.Validator
}

func (i *validating) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.check(req.Any()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i *validating) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *validating) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, &validatedConn{StreamingHandlerConn: conn, check: i.check})
	}
}

type validatedConn struct {
	connect.StreamingHandlerConn
	check func(any) error
}

func (c *validatedConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return c.check(msg)
}

func (i *validating) check(msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	err := i.v.Validate(m)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("validate request: %w", err)
	}
	return violationsError(verr, m.ProtoReflect().Descriptor())
}

// violationsError is the answer to a request breaking the rules: the
// violations as "field: message" in the text, in a google.rpc.BadRequest
// detail, and in protovalidate's own detail (buf.validate.Violations).
func violationsError(verr *protovalidate.ValidationError, root protoreflect.MessageDescriptor) *connect.Error {
	bad := &errdetails.BadRequest{}
	texts := make([]string, 0, len(verr.Violations))
	seen := map[string]bool{}
	for _, viol := range verr.Violations {
		path, msg := violationField(viol), violationMessage(viol, root)
		if seen[path+"\x00"+msg] { // two rules can say the same (enum in and defined_only)
			continue
		}
		seen[path+"\x00"+msg] = true
		bad.FieldViolations = append(bad.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: path, Description: msg})
		texts = append(texts, path+": "+msg)
	}
	out := connect.NewError(connect.CodeInvalidArgument, errors.New(strings.Join(texts, "; ")))
	if d, err := connect.NewErrorDetail(bad); err == nil {
		out.AddDetail(d)
	}
	if d, err := connect.NewErrorDetail(verr.ToProto()); err == nil {
		out.AddDetail(d)
	}
	return out
}

func violationField(v *protovalidate.Violation) string {
	return protovalidate.FieldPathString(v.Proto.GetField())
}

// violationMessage says what is wrong with a field of a message of type
// root in words a client developer can act on. It is the one place that
// rewords protovalidate's messages: enums say they are required and list the
// values they accept, patterns say what they mean, durations are in days or
// hours; other rules keep protovalidate's message, which says it well
// ("must be at most 200 characters").
func violationMessage(v *protovalidate.Violation, root protoreflect.MessageDescriptor) string {
	msg := v.Proto.GetMessage()
	rule := v.Proto.GetRuleId()
	switch {
	case rule == "required":
		if o := oneofOf(v, root); o != nil {
			names := make([]string, 0, o.Fields().Len())
			for i := range o.Fields().Len() {
				names = append(names, string(o.Fields().Get(i).Name()))
			}
			return "is required: set one of " + strings.Join(names, ", ")
		}
		return "is required"
	case strings.HasPrefix(rule, "enum."):
		fd := fieldOf(v, root)
		if n, ok := v.FieldValue.Interface().(protoreflect.EnumNumber); ok && fd != nil && fd.Enum() != nil {
			return enumMessage(fd, n)
		}
	case rule == "string.pattern":
		if hint, ok := patternHints[ruleString(v.RuleValue)]; ok {
			return "must be " + hint
		}
	case rule == "string.min_len":
		if n, ok := v.RuleValue.Interface().(uint64); ok && n == 1 {
			return "must not be empty"
		}
	case rule == "repeated.min_items":
		if n, ok := v.RuleValue.Interface().(uint64); ok && n == 1 {
			return "must contain at least one item"
		}
	case rule == "string.uuid_empty":
		return "is required (a UUID)"
	case rule == "string.email_empty":
		return "is required (an e-mail address)"
	case strings.HasPrefix(rule, "duration."):
		return durationSeconds.ReplaceAllStringFunc(msg, humanSeconds)
	}
	if msg == "" {
		return "breaks the rule " + rule
	}
	return msg
}

// fieldOf returns the descriptor of the field a violation names, found from
// the message validated when protovalidate leaves it out (the items of a
// repeated field).
func fieldOf(v *protovalidate.Violation, root protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	if v.FieldDescriptor != nil {
		return v.FieldDescriptor
	}
	var fd protoreflect.FieldDescriptor
	md := root
	for _, el := range v.Proto.GetField().GetElements() {
		if md == nil {
			return nil
		}
		if fd = md.Fields().ByNumber(protoreflect.FieldNumber(el.GetFieldNumber())); fd == nil {
			return nil
		}
		md = fd.Message()
		if fd.IsMap() {
			md = fd.MapValue().Message()
		}
	}
	return fd
}

// oneofOf returns the oneof a violation names (a required oneof left
// empty), or nil when it names a field.
func oneofOf(v *protovalidate.Violation, root protoreflect.MessageDescriptor) protoreflect.OneofDescriptor {
	elements := v.Proto.GetField().GetElements()
	if v.FieldDescriptor != nil || len(elements) == 0 {
		return nil
	}
	md := root
	for _, el := range elements[:len(elements)-1] {
		fd := md.Fields().ByNumber(protoreflect.FieldNumber(el.GetFieldNumber()))
		if fd == nil || fd.Message() == nil {
			return nil
		}
		md = fd.Message()
		if fd.IsMap() {
			md = fd.MapValue().Message()
		}
		if md == nil {
			return nil
		}
	}
	return md.Oneofs().ByName(protoreflect.Name(elements[len(elements)-1].GetFieldName()))
}

func ruleString(v protoreflect.Value) string {
	s, _ := v.Interface().(string)
	return s
}

// enumMessage explains an enum value the rules of fd refuse: 0 is "not
// set"; the values listed are those the rules accept.
func enumMessage(fd protoreflect.FieldDescriptor, got protoreflect.EnumNumber) string {
	ed := fd.Enum()
	values := strings.Join(acceptedValues(fd), ", ")
	if got == 0 {
		return "is required; use one of " + values
	}
	if v := ed.Values().ByNumber(got); v != nil {
		return fmt.Sprintf("%s is not allowed here; use one of %s", v.Name(), values)
	}
	return fmt.Sprintf("%d is not a value of %s; use one of %s", got, ed.Name(), values)
}

// acceptedValues lists the names of the values of an enum field that its
// rules (in, not_in, for the field or the items of a list) accept, but the
// zero value, which means "not set".
func acceptedValues(fd protoreflect.FieldDescriptor) []string {
	var in, notIn []int32
	if rules, err := protovalidate.ResolveFieldRules(fd); err == nil && rules != nil {
		er := rules.GetEnum()
		if fd.IsList() {
			er = rules.GetRepeated().GetItems().GetEnum()
		}
		in, notIn = er.GetIn(), er.GetNotIn()
	}
	values := fd.Enum().Values()
	var names []string
	for i := range values.Len() {
		v := values.Get(i)
		n := int32(v.Number())
		if n == 0 || slices.Contains(notIn, n) || (len(in) > 0 && !slices.Contains(in, n)) {
			continue
		}
		names = append(names, string(v.Name()))
	}
	return names
}

// durationSeconds matches the durations in protovalidate's messages.
var durationSeconds = regexp.MustCompile(`\b\d+(\.\d+)?s\b`)

// humanSeconds writes "2592000s" as "30 days".
func humanSeconds(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d == 0:
		return "0"
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}

// patternHints says in words what each pattern of the protos accepts. A test
// checks that every pattern in the protos has its hint.
var patternHints = map[string]string{
	`^[a-z0-9][a-z0-9-]{0,62}$`:    "1 to 63 lowercase letters, digits and hyphens, starting with a letter or digit, such as \"upsell-revenue\"",
	`^[a-z][a-z0-9_]{1,62}$`:       "2 to 63 lowercase letters, digits and underscores, starting with a letter, such as \"win_rate\"",
	`^[a-z0-9][a-z0-9_.-]{0,63}$`:  "1 to 64 lowercase letters, digits, dots, hyphens and underscores, starting with a letter or digit, such as \"salesforce\"",
	`^[A-Z]{3}$`:                   "an ISO 4217 currency code in capitals, such as \"EUR\"",
	`^[a-z_]+\.[a-z_]+$`:           "an event type, such as \"deal.won\"",
	`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`: "a date as YYYY-MM-DD, such as \"2026-05-01\"",
}

// checkPart validates msg with the rules written in the protos when the
// interceptor could not (rows of a batch are checked one by one, updates only
// on the fields of their mask). It returns the first violation as a domain
// error naming prefix+field. With only set, violations of other top-level
// fields are ignored.
func checkPart(v protovalidate.Validator, msg proto.Message, prefix string, only []string) error {
	err := v.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	for _, viol := range verr.Violations {
		path := violationField(viol)
		top, _, _ := strings.Cut(path, ".")
		top, _, _ = strings.Cut(top, "[")
		if only != nil && !slices.Contains(only, top) {
			continue
		}
		return &rallye.Error{Code: rallye.CodeInvalid, Field: prefix + path, Message: violationMessage(viol, msg.ProtoReflect().Descriptor())}
	}
	return nil
}

// checkMasked validates the message of an update request (the request's
// field named field) on the fields its mask names: the message is
// required, the fields outside the mask are neither read nor validated.
func checkMasked(v protovalidate.Validator, msg proto.Message, field string, mask []string) error {
	if !msg.ProtoReflect().IsValid() {
		return rallye.Invalid(field, "is required")
	}
	return checkPart(v, msg, field+".", mask)
}
