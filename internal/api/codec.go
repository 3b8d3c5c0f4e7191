package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The codecs replace connect's defaults for two reasons.
//
// JSON is strict: connect's JSON codec discards unknown fields and, with
// them, enum names it does not know, so {"period":"PERIOD_BOGUS"} would
// silently become "no period" and a misspelt field a different query. Here
// both are invalid_argument naming the field. (Binary protobuf keeps the
// standard behaviour: unknown fields are skipped, unknown enum numbers are
// refused by the rules' defined_only.)
//
// Replies are encoded by the observer: connect encodes a unary reply after
// every interceptor has returned, so a failure there (a timestamp out of
// JSON's range, invalid UTF-8) would escape the logs and the metrics. The
// observer encodes the reply with the codec of the request while it can
// still turn a failure into an ordinary internal error, and the codec then
// hands connect those bytes instead of encoding a second time.

// encodedReplies holds unary replies the observer has encoded, until
// connect asks the codec for them (or the request ends).
type encodedReplies struct {
	m sync.Map // replyKey -> []byte
}

type replyKey struct {
	codec string
	msg   proto.Message
}

func (r *encodedReplies) take(codec string, msg any) ([]byte, bool) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, false
	}
	b, ok := r.m.LoadAndDelete(replyKey{codec, m})
	if !ok {
		return nil, false
	}
	return b.([]byte), true
}

// codecNames are connect's names for its codecs: the content subtype.
const (
	codecProto     = "proto"
	codecJSON      = "json"
	codecJSONUTF8  = "json; charset=utf-8"
	defaultCodec   = codecProto
	grpcTypePrefix = "application/grpc"
)

// codecSet is the codecs of every handler, by name.
type codecSet struct {
	replies *encodedReplies
	byName  map[string]replyCodec
}

// replyCodec is a connect.Codec that can also encode a reply for the
// observer.
type replyCodec interface {
	connect.Codec
	// MarshalAppend is what connect calls when a codec has it.
	MarshalAppend(dst []byte, msg any) ([]byte, error)
	encode(proto.Message) ([]byte, error)
}

func newCodecSet() *codecSet {
	r := &encodedReplies{}
	return &codecSet{replies: r, byName: map[string]replyCodec{
		codecProto:    &protoCodec{replies: r},
		codecJSON:     &jsonCodec{name: codecJSON, replies: r},
		codecJSONUTF8: &jsonCodec{name: codecJSONUTF8, replies: r},
	}}
}

// options registers the codecs on a handler.
func (s *codecSet) options() connect.HandlerOption {
	var opts []connect.HandlerOption
	for _, c := range s.byName {
		opts = append(opts, connect.WithCodec(c))
	}
	return connect.WithHandlerOptions(opts...)
}

// encodeReply encodes res as connect is about to, with the codec of req,
// and keeps the bytes for it. It returns the key to forget if connect never
// asks (ok false: connect encodes the reply itself, as for codecs it does
// not share with us).
func (s *codecSet) encodeReply(req connect.AnyRequest, res connect.AnyResponse) (key replyKey, ok bool, err error) {
	msg, isProto := res.Any().(proto.Message)
	if !isProto {
		return replyKey{}, false, nil
	}
	name := requestCodec(req)
	c, known := s.byName[name]
	if !known {
		return replyKey{}, false, nil
	}
	b, err := c.encode(msg)
	if err != nil {
		return replyKey{}, false, fmt.Errorf("encode the %s reply: %w", name, err)
	}
	key = replyKey{name, msg}
	s.replies.m.Store(key, b)
	return key, true, nil
}

// forget drops a reply connect did not take.
func (s *codecSet) forget(key replyKey) { s.replies.m.Delete(key) }

// requestCodec names the codec connect picks for req, which is also the
// codec of its reply: the content subtype (application/grpc+json,
// application/json), or for a Connect GET the encoding query parameter.
func requestCodec(req connect.AnyRequest) string {
	if req.HTTPMethod() == http.MethodGet {
		return req.Peer().Query.Get("encoding")
	}
	ct := req.Header().Get("Content-Type")
	if strings.HasPrefix(ct, grpcTypePrefix) {
		if _, sub, ok := strings.Cut(ct, "+"); ok {
			return sub
		}
		return defaultCodec
	}
	return strings.TrimPrefix(ct, "application/")
}

// protoCodec is binary protobuf.
type protoCodec struct{ replies *encodedReplies }

func (c *protoCodec) Name() string { return codecProto }

func (c *protoCodec) encode(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func (c *protoCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

func (c *protoCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if b, ok := c.replies.take(codecProto, msg); ok {
		return append(dst, b...), nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (c *protoCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.Unmarshal(data, m)
}

func (c *protoCodec) IsBinary() bool { return true }

// strictJSON refuses unknown fields and enum names.
var strictJSON = protojson.UnmarshalOptions{DiscardUnknown: false}

// jsonCodec is protobuf's JSON mapping, strict on input.
type jsonCodec struct {
	name    string
	replies *encodedReplies
}

func (c *jsonCodec) Name() string { return c.name }

func (c *jsonCodec) encode(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }

func (c *jsonCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

func (c *jsonCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if b, ok := c.replies.take(c.name, msg); ok {
		return append(dst, b...), nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

func (c *jsonCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	if len(data) == 0 {
		return errors.New("the body is empty: send a JSON object, {} at least")
	}
	if err := strictJSON.Unmarshal(data, m); err != nil {
		return explainJSON(err, m.ProtoReflect().Descriptor())
	}
	return nil
}

func (c *jsonCodec) IsBinary() bool { return false }

// protojson's messages name the field without its path and start with its
// position; these pick out what a client can act on.
var (
	badEnumName  = regexp.MustCompile(`invalid value for enum field (\w+): "(.*)"$`)
	unknownField = regexp.MustCompile(`unknown field "?([^"\s]+)"?$`)
)

// explainJSON rewrites protojson's errors on enums and unknown fields so
// that they start with the field and say what is expected; other errors
// (syntax, types) keep protojson's words, which name the field and position.
func explainJSON(err error, md protoreflect.MessageDescriptor) error {
	msg := err.Error()
	if m := badEnumName.FindStringSubmatch(msg); m != nil {
		if fd := findField(md, m[1], map[protoreflect.FullName]bool{}); fd != nil && fd.Enum() != nil {
			return fmt.Errorf("%s: %q is not a value of %s; use one of %s", m[1], m[2], fd.Enum().Name(), strings.Join(acceptedValues(fd), ", "))
		}
		return fmt.Errorf("%s: %q is not one of its values", m[1], m[2])
	}
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s: unknown field (check its spelling against the API reference)", m[1])
	}
	return err
}

// findField looks for an enum field called name (JSON or proto name) in md
// and the messages it contains, depth first.
func findField(md protoreflect.MessageDescriptor, name string, seen map[protoreflect.FullName]bool) protoreflect.FieldDescriptor {
	if seen[md.FullName()] {
		return nil
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Enum() != nil && (fd.JSONName() == name || string(fd.Name()) == name) {
			return fd
		}
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if sub := fd.Message(); sub != nil {
			if fd.IsMap() {
				sub = fd.MapValue().Message()
				if sub == nil {
					continue
				}
			}
			if found := findField(sub, name, seen); found != nil {
				return found
			}
		}
	}
	return nil
}
