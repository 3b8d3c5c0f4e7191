package api

import (
	"encoding/json"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// ignoredFields lists the keys of one JSON event that SalesEvent does not
// have (by JSON or proto name), as paths ("amount_minor", "amount.value"),
// sorted. Objects of message fields are walked; well-known types (times,
// durations), maps and values that are not objects are left to the decoder.
func ignoredFields(raw json.RawMessage, md protoreflect.MessageDescriptor) []string {
	var out []string
	collectIgnored(raw, md, "", &out)
	slices.Sort(out)
	return out
}

func collectIgnored(raw json.RawMessage, md protoreflect.MessageDescriptor, prefix string, out *[]string) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return
	}
	fields := md.Fields()
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			*out = append(*out, prefix+key)
			continue
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsMap() && !fd.IsList() &&
			fd.Message().FullName().Parent() != "google.protobuf" {
			collectIgnored(val, fd.Message(), prefix+key+".", out)
		}
	}
}
