package challenge

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// submissionState is where a manual mission's submission stands.
type submissionState string

// Submission states.
const (
	submissionNone     submissionState = ""
	submissionPending  submissionState = "pending"
	submissionApproved submissionState = "approved"
	submissionRejected submissionState = "rejected"
)

// Submission is what a rep submitted for a manual mission.
type Submission struct {
	ID, ChallengeID, MissionID, UserID uuid.UUID
	// State is pending, approved or rejected.
	State       string
	EvidenceURL string
	Answer      string
	SubmittedAt time.Time
	ReviewedBy  uuid.UUID
	ReviewedAt  time.Time
	ReviewNote  string
}

const submissionColumns = `id, challenge_id, mission_id, user_id, state, evidence_url, answer, submitted_at,
	coalesce(reviewed_by, '00000000-0000-0000-0000-000000000000'), reviewed_at, review_note`

func scanSubmission(r pgx.Row) (Submission, error) {
	var sb Submission
	var reviewed *time.Time
	err := r.Scan(&sb.ID, &sb.ChallengeID, &sb.MissionID, &sb.UserID, &sb.State, &sb.EvidenceURL, &sb.Answer,
		&sb.SubmittedAt, &sb.ReviewedBy, &reviewed, &sb.ReviewNote)
	if reviewed != nil {
		sb.ReviewedAt = *reviewed
	}
	return sb, err
}

// SubmitRequest is a rep's submission of a manual mission.
type SubmitRequest struct {
	ChallengeID, MissionID uuid.UUID
	// EvidenceURL is required for evidence missions; Answer for quizzes.
	EvidenceURL string
	Answer      string
	RequestID   string
}

// Submit records the caller's submission of a manual mission of a running
// challenge, for a manager to approve. Retrying with the same request id
// returns the same submission.
//
// Errors: CodeNotFound for a challenge or mission the caller cannot see;
// CodeFailedPrecondition when the challenge is not running (NOT_ACTIVE), the
// mission is automatic (NOT_MANUAL) or locked (LOCKED), the caller does not
// take part (NOT_ENROLLED), or a submission is pending or approved
// (ALREADY_SUBMITTED); CodeInvalid for a missing evidence link or answer.
func (s *Service) Submit(ctx context.Context, p rallye.Principal, req SubmitRequest) (Submission, error) {
	if !p.IsPerson() {
		return Submission{}, failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	var out Submission
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		v := &viewer{p: p}
		c, _, err := v.visible(ctx, tx, req.ChallengeID, shareLock)
		if err != nil {
			return err
		}
		m, idx, ok := c.mission(req.MissionID)
		if !ok {
			return rallye.NotFound("mission")
		}
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: "SubmitMission", RequestID: req.RequestID, Request: req,
		}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = scanSubmission(tx.QueryRow(ctx, `SELECT `+submissionColumns+` FROM mission_submissions
				WHERE tenant_id = $1 AND id = $2`, p.TenantID, id))
			return err
		}
		switch {
		case !c.running(s.now()):
			return failed("NOT_ACTIVE", "submissions are open while the challenge runs")
		case !m.IsManual():
			return failed("NOT_MANUAL", "this mission completes itself from CRM data")
		case m.Manual == ManualEvidence && strings.TrimSpace(req.EvidenceURL) == "":
			return rallye.Invalid("evidence_url", "is required for this mission")
		case m.Manual == ManualQuiz && strings.TrimSpace(req.Answer) == "":
			return rallye.Invalid("answer", "is required for a quiz")
		}
		if req.EvidenceURL != "" {
			if u, err := url.Parse(req.EvidenceURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return rallye.Invalid("evidence_url", "must be an http(s) link")
			}
		}
		if err := s.ensureEnrolled(ctx, tx, c, p.UserID); err != nil {
			return err
		}
		if c.Definition.Sequential && idx > 0 {
			var prevDone bool
			err := tx.QueryRow(ctx, `SELECT coalesce((SELECT completed FROM challenge_progress
				WHERE tenant_id = $1 AND challenge_id = $2 AND mission_id = $3 AND subject_id = $4), false)`,
				p.TenantID, c.ID, c.Missions[idx-1].ID, p.UserID).Scan(&prevDone)
			if err != nil {
				return fmt.Errorf("read previous mission: %w", err)
			}
			if !prevDone {
				return failed("LOCKED", "complete %q first", c.Missions[idx-1].Name.EN)
			}
		}
		out, err = scanSubmission(tx.QueryRow(ctx, `INSERT INTO mission_submissions (tenant_id, id, challenge_id, mission_id,
				user_id, state, evidence_url, answer, submitted_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8) RETURNING `+submissionColumns,
			p.TenantID, id, c.ID, m.ID, p.UserID, req.EvidenceURL, req.Answer, s.now()))
		if postgres.IsUniqueViolation(err, "mission_submissions_open") {
			return failed("ALREADY_SUBMITTED", "this mission already has a submission waiting or approved")
		}
		if err != nil {
			return err
		}
		return s.announceSubmission(ctx, tx, c, m, out, MessageSubmissionSubmitted, uuid.Nil, "")
	})
	return out, err
}

// ensureEnrolled makes sure a person takes part: enrolled already, or
// enrolled now in an auto-enrolled challenge whose team they joined late.
func (s *Service) ensureEnrolled(ctx context.Context, tx pgx.Tx, c *Challenge, user uuid.UUID) error {
	var enrolled bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM challenge_enrollments
		WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = $3)`, c.TenantID, c.ID, user).Scan(&enrolled); err != nil {
		return fmt.Errorf("read enrollment: %w", err)
	}
	if enrolled {
		return nil
	}
	if c.Definition.Enrollment == EnrollAuto {
		o, err := loadOrg(ctx, tx, c.TenantID, []uuid.UUID{user})
		if err != nil {
			return err
		}
		if pl := o.place(c, user); pl.eligible {
			_, err := s.enroll(ctx, tx, c, []newcomer{{user: user, team: pl.team, via: "late", countsFrom: later(c.StartsAt, c.memberSince(pl.since))}})
			return err
		}
	}
	return failed("NOT_ENROLLED", "join the challenge first")
}

// ReviewRequest is a manager's decision on a submission.
type ReviewRequest struct {
	SubmissionID uuid.UUID
	// Approve, or reject.
	Approve bool
	Note    string
}

// Review approves or rejects a pending submission. Approving completes the
// mission (in a sequential challenge, once the previous one is completed)
// and awards its points exactly once; reviewing again with the same
// decision changes nothing.
//
// Errors: CodeNotFound for a submission the caller cannot see;
// CodePermissionDenied unless the caller manages the rep (or is an admin);
// CodeFailedPrecondition when the opposite decision was taken
// (ALREADY_REVIEWED) or the challenge is final or cancelled (FINAL).
func (s *Service) Review(ctx context.Context, p rallye.Principal, req ReviewRequest) (Submission, error) {
	id, approve, note := req.SubmissionID, req.Approve, req.Note
	var out Submission
	var receipts Receipts
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		receipts = nil // a retried transaction records again
		sb, err := scanSubmission(tx.QueryRow(ctx, `SELECT `+submissionColumns+` FROM mission_submissions
			WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, p.TenantID, id))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("submission")
		}
		if err != nil {
			return fmt.Errorf("read submission: %w", err)
		}
		if err := s.mayReview(ctx, tx, p, sb.UserID); err != nil {
			return err
		}
		want := string(submissionRejected)
		if approve {
			want = string(submissionApproved)
		}
		switch sb.State {
		case want:
			out = sb
			return nil
		case string(submissionPending):
		default:
			return failed("ALREADY_REVIEWED", "the submission was already %s", sb.State)
		}
		c, err := getChallenge(ctx, tx, p.TenantID, sb.ChallengeID, shareLock)
		if err != nil {
			return err
		}
		if !c.live() {
			return failed("FINAL", "the challenge is over: its results are final")
		}
		out, err = scanSubmission(tx.QueryRow(ctx, `UPDATE mission_submissions SET state = $3, reviewed_by = $4,
				reviewed_at = $5, review_note = $6
			WHERE tenant_id = $1 AND id = $2 RETURNING `+submissionColumns, p.TenantID, id, want, nullID(p.UserID), s.now(), note))
		if err != nil {
			return fmt.Errorf("review submission: %w", err)
		}
		m, _, ok := c.mission(sb.MissionID)
		if !ok {
			return rallye.NotFound("mission")
		}
		var reviewer string
		if p.IsPerson() {
			if err := tx.QueryRow(ctx, `SELECT display_name FROM users WHERE tenant_id = $1 AND id = $2`,
				p.TenantID, p.UserID).Scan(&reviewer); err != nil {
				return fmt.Errorf("read reviewer: %w", err)
			}
		}
		kind := MessageSubmissionRejected
		if approve {
			kind = MessageSubmissionApproved
			if receipts, err = s.approve(ctx, tx, c, sb, reviewer); err != nil {
				return err
			}
		}
		return s.announceSubmission(ctx, tx, c, m, out, kind, p.UserID, reviewer)
	})
	if err != nil {
		return Submission{}, err
	}
	receipts.Publish(ctx)
	return out, nil
}

// mayReview checks that the caller manages the rep: an admin, or a manager
// of one of the rep's teams (or a parent team). NotFound when the rep is
// not in the company.
func (s *Service) mayReview(ctx context.Context, tx pgx.Tx, p rallye.Principal, rep uuid.UUID) error {
	if p.Has(rallye.RoleAdmin) {
		return nil
	}
	if p.Has(rallye.RoleManager) && p.IsPerson() {
		managed, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
		if err != nil {
			return fmt.Errorf("managed teams: %w", err)
		}
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM team_members WHERE tenant_id = $1 AND user_id = $2
			AND team_id = ANY($3))`, p.TenantID, rep, managed).Scan(&ok); err != nil {
			return fmt.Errorf("check rep: %w", err)
		}
		if ok {
			return nil
		}
	}
	return rallye.Errorf(rallye.CodePermissionDenied, "only the rep's managers review their submissions")
}

// announceSubmission appends a submission message.
func (s *Service) announceSubmission(ctx context.Context, tx pgx.Tx, c *Challenge, m MissionInfo, sb Submission,
	kind outbox.Kind, reviewerID uuid.UUID, reviewer string) error {
	return outbox.Append(ctx, tx, outbox.Message{TenantID: c.TenantID, Kind: kind,
		Key: fmt.Sprintf("submission:%s:%s", sb.ID, kind), Subjects: []uuid.UUID{sb.UserID, c.ID}, OccurredAt: s.now(),
		Payload: SubmissionEvent{SubmissionID: sb.ID, ChallengeID: c.ID, Challenge: c.Definition.Name, MissionID: m.ID,
			Mission: m.Name, UserID: sb.UserID, ReviewerID: reviewerID, Reviewer: reviewer, Note: sb.ReviewNote, At: s.now()}})
}

// approve marks the manual mission met for the rep and settles it; the
// points' history names the reviewer.
func (s *Service) approve(ctx context.Context, tx pgx.Tx, c *Challenge, sb Submission, reviewer string) (Receipts, error) {
	_, idx, ok := c.mission(sb.MissionID)
	if !ok {
		return nil, rallye.NotFound("mission")
	}
	b, err := s.batchFor(ctx, tx, c, sb.UserID)
	if err != nil {
		return nil, err
	}
	b.approvedBy = reviewer
	en := b.enr[enrollmentKey{c.ID, sb.UserID}]
	if en == nil {
		return nil, failed("NOT_ENROLLED", "the rep does not take part in the challenge")
	}
	b.setMet(b.progressFor(sb.MissionID, sb.UserID), true)
	if err := b.settle(c, en, map[int]bool{idx: true}, sb.SubmittedAt); err != nil {
		return nil, err
	}
	return b.flush()
}

// batchFor prepares a batch for one participant of one challenge.
func (s *Service) batchFor(ctx context.Context, tx pgx.Tx, c *Challenge, user uuid.UUID) (*batch, error) {
	cc, err := s.compiledFor(c)
	if err != nil {
		return nil, err
	}
	b := &batch{s: s, ctx: ctx, tx: tx, tenant: c.TenantID, challenges: []*Challenge{c},
		compiled: map[uuid.UUID]*compiled{c.ID: cc}, enr: map[enrollmentKey]*enrollment{},
		prog: map[progressKey]*progress{}, contrib: map[contributionKey]*contributionRow{}}
	if err := b.loadEnrollments([]uuid.UUID{c.ID}, []uuid.UUID{user}); err != nil {
		return nil, err
	}
	subjects := []uuid.UUID{user}
	if en := b.enr[enrollmentKey{c.ID, user}]; en != nil && en.TeamID != uuid.Nil {
		subjects = append(subjects, en.TeamID)
	}
	return b, b.loadProgress([]uuid.UUID{c.ID}, subjects)
}

// ListSubmissionsRequest selects a page of submissions, newest first.
type ListSubmissionsRequest struct {
	ChallengeID uuid.UUID // uuid.Nil: every challenge
	State       string    // "": every state
	Size        int
	Cursor      page.Cursor
}

// ListSubmissions lists the submissions the caller may see: their own for
// a rep, their reps' for a manager, all for HR and admins.
func (s *Service) ListSubmissions(ctx context.Context, p rallye.Principal, req ListSubmissionsRequest) ([]Submission, error) {
	var out []Submission
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var users []uuid.UUID // nil: everyone
		switch {
		case p.Has(rallye.RoleAdmin, rallye.RoleHR):
		case p.Has(rallye.RoleManager):
			managed, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
			if err != nil {
				return fmt.Errorf("managed teams: %w", err)
			}
			rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM team_members WHERE tenant_id = $1 AND team_id = ANY($2)
				UNION SELECT $3::uuid`, p.TenantID, managed, p.UserID)
			if err != nil {
				return err
			}
			if users, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil {
				return err
			}
		default:
			users = []uuid.UUID{p.UserID}
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT `+submissionColumns+` FROM mission_submissions
			WHERE tenant_id = $1 AND id < $2 AND ($3::uuid IS NULL OR challenge_id = $3) AND ($4 = '' OR state = $4)
			  AND ($5::uuid[] IS NULL OR user_id = ANY($5))
			ORDER BY id DESC LIMIT $6`, p.TenantID, before, nullID(req.ChallengeID), req.State, users, req.Size)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Submission, error) { return scanSubmission(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list submissions: %w", err)
	}
	return out, nil
}
