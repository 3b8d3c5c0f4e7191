package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/rallyehq/rallye/gen/rallye/v1" // registers the descriptors
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// openAPI is the part of gen/openapi/rallye.openapi.yaml the tests read.
type openAPI struct {
	Paths map[string]struct {
		Post *struct {
			Description string `yaml:"description"`
			RequestBody struct {
				Content map[string]struct {
					Schema schemaRef `yaml:"schema"`
				} `yaml:"content"`
			} `yaml:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema schemaRef `yaml:"schema"`
				} `yaml:"content"`
			} `yaml:"responses"`
		} `yaml:"post"`
	} `yaml:"paths"`
	Components struct {
		Schemas map[string]schema `yaml:"schemas"`
	} `yaml:"components"`
}

type schemaRef struct {
	Ref string `yaml:"$ref"`
}

type schema struct {
	Ref        string            `yaml:"$ref"`
	Properties map[string]schema `yaml:"properties"`
	Items      *schema           `yaml:"items"`
	Enum       []any             `yaml:"enum"`
	// A required oneof is an allOf of the other fields and a oneOf of its
	// choices.
	AllOf []schema `yaml:"allOf"`
	OneOf []schema `yaml:"oneOf"`
}

// properties are the properties s describes, its oneof choices included.
func (s schema) properties() map[string]schema {
	out := map[string]schema{}
	for k, v := range s.Properties {
		out[k] = v
	}
	for _, sub := range slices.Concat(s.AllOf, s.OneOf) {
		for k, v := range sub.properties() {
			out[k] = v
		}
	}
	return out
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	raw, err := os.ReadFile("../../gen/openapi/rallye.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func ref(name protoreflect.FullName) string { return "#/components/schemas/" + string(name) }

// The OpenAPI description has an operation for every unary procedure, with
// the request and response messages of the protos, its documentation, and
// nothing else; every message's schema has exactly the message's JSON fields
// and every enum its values.
func TestOpenAPIDescribesEveryProcedure(t *testing.T) {
	doc := loadOpenAPI(t)
	described := map[string]bool{}
	for path, item := range doc.Paths {
		if item.Post != nil {
			described[path] = true
		}
	}
	procedures := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("rallye.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				path := fmt.Sprintf("/%s/%s", svc.FullName(), m.Name())
				if m.IsStreamingServer() || m.IsStreamingClient() {
					if described[path] {
						t.Errorf("%s streams: the document leaves streams out", path)
					}
					continue
				}
				procedures++
				delete(described, path)
				op := doc.Paths[path].Post
				if op == nil {
					t.Errorf("%s is not described", path)
					continue
				}
				if got := op.RequestBody.Content["application/json"].Schema.Ref; got != ref(m.Input().FullName()) {
					t.Errorf("%s request = %q, want %q", path, got, ref(m.Input().FullName()))
				}
				if got := op.Responses["200"].Content["application/json"].Schema.Ref; got != ref(m.Output().FullName()) {
					t.Errorf("%s response = %q, want %q", path, got, ref(m.Output().FullName()))
				}
				if got := op.Responses["default"].Content["application/json"].Schema.Ref; got != "#/components/schemas/connect.error" {
					t.Errorf("%s error = %q, want connect.error", path, got)
				}
				if strings.TrimSpace(op.Description) == "" {
					t.Errorf("%s has no description", path)
				}
			}
		}
		return true
	})
	if procedures < 90 {
		t.Fatalf("only %d unary procedures found: descriptors not registered?", procedures)
	}
	for path := range described {
		t.Errorf("%s is described but is no procedure", path)
	}

	schemas := 0
	for name, s := range doc.Components.Schemas {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil || !strings.HasPrefix(name, "rallye.v1.") {
			continue
		}
		schemas++
		switch d := d.(type) {
		case protoreflect.MessageDescriptor:
			var want, got []string
			for i := range d.Fields().Len() {
				want = append(want, d.Fields().Get(i).JSONName())
			}
			for p := range s.properties() {
				got = append(got, p)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("schema %s has properties %v, the message has fields %v", name, got, want)
			}
		case protoreflect.EnumDescriptor:
			var want, got []string
			for i := range d.Values().Len() {
				want = append(want, string(d.Values().Get(i).Name()))
			}
			for _, v := range s.Enum {
				if str, ok := v.(string); ok {
					got = append(got, str)
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("enum %s has values %v, the proto has %v", name, got, want)
			}
		}
	}
	if schemas < 100 {
		t.Fatalf("only %d rallye.v1 schemas found", schemas)
	}
}

// A request written from the document alone gets the answer the document
// describes: every property of the answer is in the response's schema, and an
// error has the shape of connect.error.
func TestOpenAPIMatchesTheServer(t *testing.T) {
	doc := loadOpenAPI(t)
	srv := testserver.Start(t)
	company := testserver.NewCompany(t, srv.App.Org)
	testserver.NewPerson(t, srv.App.Org, company, []rallye.Role{rallye.RoleRep})

	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
		req.Header.Set("Authorization", "Bearer "+company.AdminToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var out map[string]any
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, raw)
		}
		return res.StatusCode, out
	}
	for _, tc := range []struct{ path, body string }{
		{"/rallye.v1.OrganizationService/GetMe", `{}`},
		{"/rallye.v1.OrganizationService/ListUsers", `{"pageSize": 10}`},
		{"/rallye.v1.OrganizationService/GetTenant", `{}`},
		{"/rallye.v1.KpiService/InstallModel", `{}`},
		{"/rallye.v1.KpiService/ListKpis", `{}`},
		{"/rallye.v1.ChallengeTemplateService/ListChallengeTemplates", `{}`},
	} {
		status, out := post(tc.path, tc.body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %v", tc.path, status, out)
		}
		want := doc.Paths[tc.path].Post.Responses["200"].Content["application/json"].Schema.Ref
		checkAgainst(t, doc, tc.path, want, out)
	}

	status, out := post("/rallye.v1.OrganizationService/ListUsers", `{"pageSize": 100000}`)
	if status != http.StatusBadRequest {
		t.Fatalf("invalid page size: status %d", status)
	}
	checkAgainst(t, doc, "error", "#/components/schemas/connect.error", out)
	if out["code"] != "invalid_argument" || !strings.Contains(fmt.Sprint(out["message"]), "page_size") {
		t.Fatalf("error = %v", out)
	}
}

// checkAgainst fails when value has a property its schema does not describe,
// following references into objects and arrays.
func checkAgainst(t *testing.T, doc openAPI, at, schemaRef string, value any) {
	t.Helper()
	s, ok := doc.Components.Schemas[strings.TrimPrefix(schemaRef, "#/components/schemas/")]
	if !ok {
		t.Fatalf("%s: no schema %s", at, schemaRef)
	}
	obj, isObj := value.(map[string]any)
	props := s.properties()
	if !isObj || len(props) == 0 {
		return // a scalar, an enum or a well-known type with its own JSON form
	}
	for k, v := range obj {
		p, ok := props[k]
		if !ok {
			t.Errorf("%s.%s is not in %s", at, k, schemaRef)
			continue
		}
		switch {
		case p.Ref != "":
			checkAgainst(t, doc, at+"."+k, p.Ref, v)
		case p.Items != nil && p.Items.Ref != "":
			items, _ := v.([]any)
			for i, item := range items {
				checkAgainst(t, doc, fmt.Sprintf("%s.%s[%d]", at, k, i), p.Items.Ref, item)
			}
		}
	}
}
