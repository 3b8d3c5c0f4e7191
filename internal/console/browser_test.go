package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/console"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// browser starts a headless Chromium (Debian's package) for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed for the console's browser tests (Debian's chromium package; .ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1440, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// screenshots is where the test writes its pictures:
// RALLYE_CONSOLE_SCREENSHOTS, or a temporary folder.
func screenshots(t *testing.T) string {
	if dir := os.Getenv("RALLYE_CONSOLE_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A manager signs in to the demo, opens the running challenge's live board,
// sees a rep's new meeting move it without reloading, reads the level-1
// dashboard, launches a challenge from a template in the wizard, approves a
// rep's manual mission and sees the points on the board, and switches to
// English; a rep cannot reach the management pages.
func TestConsoleInABrowser(t *testing.T) {
	ctx := browser(t)
	dir := screenshots(t)
	srv := testserver.Start(t)
	bg := context.Background()
	res, err := demo.Seed(bg, srv.App.Org)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.SeedKPIs(bg, res, demo.Activity{KPI: srv.App.KPI, Events: srv.App.Events, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	challenge, err := demo.SeedChallenge(bg, srv.App.Challenges, srv.App.Events, res)
	if err != nil {
		t.Fatal(err)
	}
	byExt := map[string]org.User{}
	var people []console.DemoPerson
	for _, u := range res.People {
		byExt[u.ExternalID] = u
		p := console.DemoPerson{Name: u.DisplayName, Email: u.Email, Token: testserver.Token(t, u)}
		for _, r := range u.Roles {
			p.Roles = append(p.Roles, string(r))
		}
		people = append(people, p)
	}
	srv.App.Console.EnableDemo(people)
	manager, rep := byExt["crm-mgr-001"], byExt["crm-rep-003"]

	managerBoards := rallyev1connect.NewLeaderboardServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(testserver.Token(t, manager)))
	// A challenge's individual board, once its start job has opened it.
	individualBoard := func(challengeID string) string {
		t.Helper()
		var id string
		eventually(t, "the challenge's board opens", func() bool {
			listed, err := managerBoards.ListBoards(bg, &rallyev1.ListBoardsRequest{ChallengeId: challengeID})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range listed.Boards {
				if b.Kind == rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL {
					id = b.Id
				}
			}
			return id != ""
		})
		return id
	}
	// The rep's points on a board, as the API says.
	repPoints := func(board string) int64 {
		t.Helper()
		r, err := managerBoards.GetRanking(bg, &rallyev1.GetRankingRequest{BoardId: board, PageSize: 50})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.Ranking.Entries {
			if e.ParticipantId == rep.ID.String() {
				return e.Points
			}
		}
		return 0
	}
	boardID := individualBoard(challenge.ID.String())
	points := func() int64 { return repPoints(boardID) }

	// Sign in as the manager through the demo's person picker.
	run(t, ctx, "sign-in page",
		chromedp.Navigate(srv.URL+console.Path),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`button[data-email="%s"]`, manager.Email))),
	)
	shoot(t, ctx, dir, "sign-in")
	run(t, ctx, "sign in as the manager",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-email="%s"]`, manager.Email))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[data-board="%s"]`, boardID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[data-board="%s"]`, boardID))),
		chromedp.WaitVisible(chromedp.CSS(`ol.ranking .entry`)),
	)

	// Wait until the demo's seeded events have reached the board the browser
	// shows, then send a meeting for the rep: the board moves without reload
	// to the points the API gives.
	row := fmt.Sprintf(`li.entry[data-participant="%s"]`, rep.ID)
	shown := func() int64 {
		attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(row), "data-points"))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(attr.Value, 10, 64)
		return n
	}
	before := points()
	waitShown(t, ctx, row, before)
	_, err = srv.App.Events.Ingest(bg, rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}, []event.Row{{
		Event: event.Event{Source: demo.DemoSource, ExternalID: "browser-test-meeting", Type: event.MeetingHeld,
			OccurredAt: time.Now().Add(-time.Second), RepExternalID: rep.ExternalID},
	}})
	if err != nil {
		t.Fatal(err)
	}
	after := waitAPI(t, points, before)
	waitShown(t, ctx, row, after)
	if got := shown(); got != after {
		t.Fatalf("the board shows %d points for the rep, the API %d", got, after)
	}
	shoot(t, ctx, dir, "board")
	run(t, ctx, "TV mode",
		chromedp.Navigate(srv.URL+console.Path+"#/board/"+boardID+"/tv"),
		chromedp.WaitVisible(chromedp.CSS(`body.tv ol.ranking .entry`)),
	)
	shoot(t, ctx, dir, "board-tv")

	// The level-1 dashboard has a card per KPI the API gives the manager.
	dash := rallyev1connect.NewDashboardServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(testserver.Token(t, manager)))
	level1, err := dash.GetLevel1(bg, &rallyev1.GetLevel1Request{Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
	if err != nil || len(level1.Kpis) == 0 {
		t.Fatalf("level 1: %v %v", level1, err)
	}
	last := level1.Kpis[len(level1.Kpis)-1].Key
	run(t, ctx, "dashboard",
		chromedp.Navigate(srv.URL+console.Path+"#/dashboard/1"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`section.card[data-kpi="%s"]`, last))),
	)
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("section.card").length`))
	if err != nil {
		t.Fatal(err)
	}
	if cards != len(level1.Kpis) {
		t.Fatalf("%d cards, the API gives %d KPIs", cards, len(level1.Kpis))
	}
	shoot(t, ctx, dir, "dashboard")

	// Launch an onboarding challenge for the north region from the wizard.
	challenges := rallyev1connect.NewChallengeServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(testserver.Token(t, manager)))
	onboardings := func() int {
		t.Helper()
		list, err := challenges.ListChallenges(bg, &rallyev1.ListChallengesRequest{PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range list.Challenges {
			if o.Challenge.TemplateKey == "onboarding" {
				n++
			}
		}
		return n
	}
	launchedBefore := onboardings()
	run(t, ctx, "open the wizard",
		chromedp.Click(chromedp.CSS(`a[data-nav="challenges"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[data-action="launch"]`)),
		chromedp.Click(chromedp.CSS(`a[data-action="launch"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-template="onboarding"]`)),
		chromedp.Click(chromedp.CSS(`input[data-template="onboarding"]`)),
		chromedp.Click(chromedp.CSS(`input[data-team="team-north"]`)),
	)
	shoot(t, ctx, dir, "launch")
	run(t, ctx, "launch",
		chromedp.Click(chromedp.CSS(`button[data-action="confirm-launch"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.missions li`)),
	)
	if got := onboardings(); got != launchedBefore+1 {
		t.Fatalf("onboarding challenges: %d, want %d", got, launchedBefore+1)
	}
	shoot(t, ctx, dir, "challenge")

	// A challenge with a manual mission: the rep submits evidence, the
	// manager approves it in the console, and the points show on its board.
	created, err := challenges.CreateChallengeFromTemplate(bg, &rallyev1.CreateChallengeFromTemplateRequest{
		TemplateKey: "onboarding", TeamIds: []string{rep.TeamIDs[0].String()}, Publish: true, RequestId: "browser-test-manual",
		Overrides: &rallyev1.ChallengeDefinition{
			Name: &rallyev1.LocalizedText{Fr: "Démo client", En: "Customer demo"},
			Missions: []*rallyev1.Mission{{
				Key: "customer-demo", Name: &rallyev1.LocalizedText{Fr: "Faire une démo client", En: "Give a customer demo"},
				Scope: rallyev1.MissionScope_MISSION_SCOPE_INDIVIDUAL, Points: 40,
				Condition: &rallyev1.Mission_Manual{Manual: &rallyev1.ManualCondition{Kind: rallyev1.ManualKind_MANUAL_KIND_EVIDENCE}},
			}},
		},
		OverrideMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "missions"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manual := created.Challenge
	manualBoard := individualBoard(manual.Id)
	repMissions := rallyev1connect.NewMissionServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(testserver.Token(t, rep)))
	submitted, err := repMissions.SubmitMission(bg, &rallyev1.SubmitMissionRequest{
		ChallengeId: manual.Id, MissionId: manual.Definition.Missions[0].Id,
		EvidenceUrl: "https://crm.example.com/meetings/42", RequestId: "browser-test-submit",
	})
	if err != nil {
		t.Fatal(err)
	}
	boardPoints := func() int64 { return repPoints(manualBoard) }
	pointsBefore := boardPoints()
	item := fmt.Sprintf(`li[data-submission="%s"]`, submitted.Submission.Id)
	run(t, ctx, "the approval queue",
		chromedp.Click(chromedp.CSS(`a[data-nav="approvals"]`)),
		chromedp.WaitVisible(chromedp.CSS(item)),
	)
	shoot(t, ctx, dir, "approvals")
	run(t, ctx, "approve",
		chromedp.Click(chromedp.CSS(item+` button[data-action="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.empty`)),
	)
	pointsAfter := waitAPI(t, boardPoints, pointsBefore)
	if pointsAfter != pointsBefore+manual.Definition.Missions[0].Points {
		t.Fatalf("after the approval the rep has %d points, want %d", pointsAfter, pointsBefore+manual.Definition.Missions[0].Points)
	}
	run(t, ctx, "the manual challenge's board",
		chromedp.Navigate(srv.URL+console.Path+"#/board/"+manualBoard),
		chromedp.WaitVisible(chromedp.CSS(`ol.ranking`)),
	)
	waitShown(t, ctx, row, pointsAfter)
	run(t, ctx, "back to the dashboard",
		chromedp.Navigate(srv.URL+console.Path+"#/dashboard/1"),
		chromedp.WaitVisible(chromedp.CSS(`section.card`)),
	)

	// The language switch: English, then back to French.
	run(t, ctx, "switch to English",
		chromedp.Click(chromedp.CSS(`button[data-action="language"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section.card`)),
	)
	title := text(t, ctx, `main h1`)
	lang, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.lang`))
	if err != nil {
		t.Fatal(err)
	}
	if title != "Dashboard" || lang != "en" {
		t.Fatalf("after the switch: title %q, lang %q", title, lang)
	}
	shoot(t, ctx, dir, "dashboard-en")
	run(t, ctx, "switch to French",
		chromedp.Click(chromedp.CSS(`button[data-action="language"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section.card`)),
	)
	if title = text(t, ctx, `main h1`); title != "Tableau de bord" {
		t.Fatalf("back in French: title %q", title)
	}

	// A rep: the management pages say no, and so does the API.
	run(t, ctx, "sign in as a rep",
		chromedp.Click(chromedp.CSS(`button.signout`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`button[data-email="%s"]`, rep.Email))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-email="%s"]`, rep.Email))),
		chromedp.WaitVisible(chromedp.CSS(`ul.boards`)),
		chromedp.Navigate(srv.URL+console.Path+"#/dashboard/1"),
		chromedp.WaitVisible(chromedp.CSS(`p.denied`)),
	)
	shoot(t, ctx, dir, "rep-denied")
	repDash := rallyev1connect.NewDashboardServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(testserver.Token(t, rep)))
	if _, err := repDash.GetLevel1(bg, &rallyev1.GetLevel1Request{}); err == nil {
		t.Fatal("a rep read the level-1 dashboard through the API")
	}
}

// eventually polls the API until done says so, for at most 30 s.
func eventually(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(50 * time.Millisecond) // the interval of a poll, not a wait standing in for one
	}
}

// waitAPI waits until the API's value differs from before, and returns it.
func waitAPI(t *testing.T, read func() int64, before int64) int64 {
	t.Helper()
	var v int64
	eventually(t, "the rep's points change", func() bool { v = read(); return v != before })
	return v
}

// waitShown waits until the browser shows want points in row.
func waitShown(t *testing.T, ctx context.Context, row string, want int64) {
	t.Helper()
	js := fmt.Sprintf(`(document.querySelector('%s')?.dataset.points ?? "0") === "%d"`, row, want)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the board shows %d points: %v", want, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
