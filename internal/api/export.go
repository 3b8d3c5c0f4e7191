package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/export"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// exportHandler serves rallyev1connect.ExportServiceHandler and, through
// exportHTTP, the same files over plain HTTP.
type exportHandler struct {
	analytics *analytics.Service
	rewards   *reward.Service
}

// exportJob is one download: its columns, how it is written, and what
// produces its rows.
type exportJob struct {
	name    string
	columns []string
	opts    export.Options
	produce func(ctx context.Context, p rallye.Principal, row func(cells ...any) error) error
}

func exportOptions(o *rallyev1.ExportOptions) export.Options {
	out := export.Options{BOM: o.GetBom()}
	if o.GetFormat() == rallyev1.ExportFormat_EXPORT_FORMAT_JSONL {
		out.Format = export.JSONLines
	}
	return out
}

func (h *exportHandler) participationJob(req *rallyev1.ExportParticipationRequest) (exportJob, error) {
	ids, err := parseIDs("challenge_ids", req.GetChallengeIds())
	if err != nil {
		return exportJob{}, err
	}
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return exportJob{}, err
	}
	r := analytics.ParticipationRequest{ChallengeIDs: ids, TeamID: team, Start: timeOf(req.GetStartTime()),
		End: timeOf(req.GetEndTime()), IncludePeople: req.GetIncludePeople()}
	return exportJob{name: "participation", columns: analytics.ParticipationColumns, opts: exportOptions(req.GetOptions()),
		produce: func(ctx context.Context, p rallye.Principal, row func(...any) error) error {
			return h.analytics.ExportParticipation(ctx, p, r, row)
		}}, nil
}

func (h *exportHandler) impactJob(req *rallyev1.ExportImpactRequest) (exportJob, error) {
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return exportJob{}, err
	}
	method := analytics.MethodBootstrap
	if req.GetMethod() == rallyev1.IntervalMethod_INTERVAL_METHOD_NORMAL {
		method = analytics.MethodNormal
	}
	r := analytics.ImpactRequest{ChallengeID: id, KPIKeys: req.GetKpiKeys(), Method: method, Seed: req.Seed}
	return exportJob{name: "impact", columns: analytics.ImpactColumns, opts: exportOptions(req.GetOptions()),
		produce: func(ctx context.Context, p rallye.Principal, row func(...any) error) error {
			return h.analytics.ExportImpact(ctx, p, r, row)
		}}, nil
}

func (h *exportHandler) grantsJob(req *rallyev1.ExportGrantsRequest) (exportJob, error) {
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return exportJob{}, err
	}
	ch, err := parseOptionalID("challenge_id", req.GetChallengeId())
	if err != nil {
		return exportJob{}, err
	}
	r := reward.GrantsExportRequest{Start: timeOf(req.GetStartTime()), End: timeOf(req.GetEndTime()), TeamID: team, ChallengeID: ch}
	return exportJob{name: "grants", columns: reward.GrantColumns, opts: exportOptions(req.GetOptions()),
		produce: func(ctx context.Context, p rallye.Principal, row func(...any) error) error {
			return h.rewards.ExportGrants(ctx, p, r, row)
		}}, nil
}

// chunks sends what an export writes as response messages (one per flush
// of the export's 32 KiB buffer). Send marshals the message before
// returning: the buffer may be reused.
type chunks func(b []byte) error

func (c chunks) Write(b []byte) (int, error) {
	if err := c(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (h *exportHandler) stream(ctx context.Context, job exportJob, err error, send chunks) error {
	if err != nil {
		return err
	}
	p, _ := rallye.PrincipalFrom(ctx)
	w := export.NewWriter(send, job.columns, job.opts, nil)
	if err := job.produce(ctx, p, w.Row); err != nil {
		return err
	}
	return w.Close()
}

func (h *exportHandler) ExportParticipation(ctx context.Context, req *rallyev1.ExportParticipationRequest, stream *connect.ServerStream[rallyev1.ExportParticipationResponse]) error {
	job, err := h.participationJob(req)
	return h.stream(ctx, job, err, func(b []byte) error { return stream.Send(&rallyev1.ExportParticipationResponse{Data: b}) })
}

func (h *exportHandler) ExportImpact(ctx context.Context, req *rallyev1.ExportImpactRequest, stream *connect.ServerStream[rallyev1.ExportImpactResponse]) error {
	job, err := h.impactJob(req)
	return h.stream(ctx, job, err, func(b []byte) error { return stream.Send(&rallyev1.ExportImpactResponse{Data: b}) })
}

func (h *exportHandler) ExportGrants(ctx context.Context, req *rallyev1.ExportGrantsRequest, stream *connect.ServerStream[rallyev1.ExportGrantsResponse]) error {
	job, err := h.grantsJob(req)
	return h.stream(ctx, job, err, func(b []byte) error { return stream.Send(&rallyev1.ExportGrantsResponse{Data: b}) })
}

// ExportPrefix is where the HTTP downloads are served:
// /export/{participation,impact,grants}.{csv,jsonl}.
const ExportPrefix = "/export/"

// exportRoute is one HTTP download: the procedure whose rule admits it,
// its request message and how that becomes a job.
type exportRoute struct {
	procedure string
	request   func() proto.Message
	job       func(proto.Message) (exportJob, error)
}

// exportHTTP serves the ExportService files over plain HTTP GET, for curl,
// browsers and BI tools: the credential is checked against the
// procedure's rule before a parameter is read; the query becomes the
// request message (validated by the same protovalidate rules); an error
// before the first bytes is a Connect error in JSON, one after them cuts
// the body short (and is logged).
type exportHTTP struct {
	guard     *guard
	observer  *observer
	validator *validating
	errors    *connect.ErrorWriter
	routes    map[string]exportRoute
}

func newExportHTTP(g *guard, obs *observer, v *validating, h *exportHandler) *exportHTTP {
	return &exportHTTP{guard: g, observer: obs, validator: v, errors: connect.NewErrorWriter(), routes: map[string]exportRoute{
		"participation": {rallyev1connect.ExportServiceExportParticipationProcedure,
			func() proto.Message { return &rallyev1.ExportParticipationRequest{} },
			func(m proto.Message) (exportJob, error) {
				return h.participationJob(m.(*rallyev1.ExportParticipationRequest))
			}},
		"impact": {rallyev1connect.ExportServiceExportImpactProcedure,
			func() proto.Message { return &rallyev1.ExportImpactRequest{} },
			func(m proto.Message) (exportJob, error) { return h.impactJob(m.(*rallyev1.ExportImpactRequest)) }},
		"grants": {rallyev1connect.ExportServiceExportGrantsProcedure,
			func() proto.Message { return &rallyev1.ExportGrantsRequest{} },
			func(m proto.Message) (exportJob, error) { return h.grantsJob(m.(*rallyev1.ExportGrantsRequest)) }},
	}}
}

// lazyHeaders sets the download's headers just before its first bytes, so
// that an error found before them can still be answered as an error.
type lazyHeaders struct {
	w       http.ResponseWriter
	headers func()
	started bool
}

func (l *lazyHeaders) Write(b []byte) (int, error) {
	if !l.started {
		l.started = true
		l.headers()
	}
	return l.w.Write(b)
}

func (h *exportHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	file := strings.TrimPrefix(r.URL.Path, ExportPrefix)
	base, ext, _ := strings.Cut(file, ".")
	route, ok := h.routes[base]
	if !ok || (ext != "csv" && ext != "jsonl") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "GET the file", http.StatusMethodNotAllowed)
		return
	}
	start := time.Now()
	ctx := h.observer.begin(r.Context(), route.procedure)
	fail := func(err error) {
		err = h.observer.end(ctx, route.procedure, start, err)
		_ = h.errors.Write(w, r, err)
	}
	// Who asks, first: nothing of the request is read before.
	ctx, err := h.guard.admit(ctx, route.procedure, r.Header.Get("Authorization"))
	if err != nil {
		fail(err)
		return
	}
	p, _ := rallye.PrincipalFrom(ctx)
	msg := route.request()
	if err := queryToMessage(r.URL.Query(), msg, ext); err != nil {
		fail(err)
		return
	}
	if err := h.validator.check(msg); err != nil {
		fail(err)
		return
	}
	job, err := route.job(msg)
	if err != nil {
		fail(err)
		return
	}
	lw := &lazyHeaders{w: w, headers: func() {
		w.Header().Set("Content-Type", job.opts.Format.ContentType())
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.%s"`, job.name,
			time.Now().UTC().Format("20060102T150405Z"), job.opts.Format.Extension()))
		w.Header().Set("Cache-Control", "no-store")
	}}
	flush := func() error {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	}
	ew := export.NewWriter(lw, job.columns, job.opts, flush)
	err = job.produce(ctx, p, ew.Row)
	if err == nil {
		err = ew.Close()
	}
	if err != nil && !lw.started {
		fail(err)
		return
	}
	h.observer.end(ctx, route.procedure, start, err)
}

// queryToMessage sets the fields of a request message from URL query
// parameters named like the fields (options: format from the file's
// extension, bom=true). Unknown parameters and unreadable values are
// InvalidArgument naming the parameter.
func queryToMessage(q map[string][]string, msg proto.Message, ext string) error {
	m := msg.ProtoReflect()
	fields := m.Descriptor().Fields()
	opts := &rallyev1.ExportOptions{Format: rallyev1.ExportFormat_EXPORT_FORMAT_CSV}
	if ext == "jsonl" {
		opts.Format = rallyev1.ExportFormat_EXPORT_FORMAT_JSONL
	}
	for name, values := range q {
		if name == "bom" {
			b, err := strconv.ParseBool(values[len(values)-1])
			if err != nil {
				return rallye.Invalid("bom", "must be true or false")
			}
			opts.Bom = b
			continue
		}
		fd := fields.ByName(protoreflect.Name(name))
		if fd == nil || name == "options" {
			return rallye.Invalid(name, "is not a parameter of this export")
		}
		if fd.IsList() {
			list := m.Mutable(fd).List()
			for _, v := range values {
				val, err := queryValue(fd, v)
				if err != nil {
					return err
				}
				list.Append(val)
			}
			continue
		}
		val, err := queryValue(fd, values[len(values)-1])
		if err != nil {
			return err
		}
		m.Set(fd, val)
	}
	if fd := fields.ByName("options"); fd != nil {
		m.Set(fd, protoreflect.ValueOfMessage(opts.ProtoReflect()))
	}
	return nil
}

func queryValue(fd protoreflect.FieldDescriptor, v string) (protoreflect.Value, error) {
	name := string(fd.Name())
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(v), nil
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return protoreflect.Value{}, rallye.Invalid(name, "must be true or false")
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int64Kind:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return protoreflect.Value{}, rallye.Invalid(name, "must be an integer")
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.EnumKind:
		// The value's name, with or without the enum's prefix, any case:
		// method=normal or method=INTERVAL_METHOD_NORMAL.
		values := fd.Enum().Values()
		for i := range values.Len() {
			ev := values.Get(i)
			full := string(ev.Name())
			if strings.EqualFold(full, v) || strings.HasSuffix(strings.ToLower(full), "_"+strings.ToLower(v)) {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
		}
		return protoreflect.Value{}, rallye.Invalid(name, "is not one of the values listed in the API")
	case protoreflect.MessageKind:
		if fd.Message().FullName() == "google.protobuf.Timestamp" {
			// An unencoded "+01:00" arrives as " 01:00".
			t, err := time.Parse(time.RFC3339, strings.ReplaceAll(v, " ", "+"))
			if err != nil {
				return protoreflect.Value{}, rallye.Invalid(name, "must be an RFC 3339 time such as 2026-03-01T00:00:00Z")
			}
			return protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()), nil
		}
	}
	return protoreflect.Value{}, rallye.Invalid(name, "cannot be given as a query parameter")
}
