package api

import (
	"errors"
	"slices"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/rallyehq/rallye/internal/rallye"
)

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
		path := protovalidate.FieldPathString(viol.Proto.GetField())
		top, _, _ := strings.Cut(path, ".")
		top, _, _ = strings.Cut(top, "[")
		if only != nil && !slices.Contains(only, top) {
			continue
		}
		return &rallye.Error{Code: rallye.CodeInvalid, Field: prefix + path, Message: viol.Proto.GetMessage()}
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
