package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
)

const feedUsage = "usage: rallye feed dead-letters [--tenant SLUG] [--all] | feed retry ID | feed discard ID"

func runFeed(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", feedUsage)
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "dead-letters":
		return runFeedDeadLetters(ctx, db, os.Stdout, args[1:])
	case "retry", "discard":
		if len(args) != 2 {
			return fmt.Errorf("%s", feedUsage)
		}
		id, err := uuid.Parse(args[1])
		if err != nil {
			return fmt.Errorf("%q is not a dead letter id (see rallye feed dead-letters)", args[1])
		}
		act, verb := event.RetryDeadLetter, "queued for a retry (the servers apply them now, each exactly once)"
		if args[0] == "discard" {
			act, verb = event.DiscardDeadLetter, "discarded (never applied)"
		}
		n, err := act(ctx, db, id)
		if err != nil {
			return err
		}
		fmt.Printf("%d change(s) %s\n", n, verb)
		return nil
	}
	return fmt.Errorf("%s", feedUsage)
}

func runFeedDeadLetters(ctx context.Context, db *postgres.DB, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("feed dead-letters", flag.ContinueOnError)
	tenantRef := fs.String("tenant", "", "company slug or id (default: every company)")
	all := fs.Bool("all", false, "also list retried and discarded letters")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	q := event.DeadLetterQuery{Resolved: *all, Size: 500}
	if *tenantRef != "" {
		t, err := org.NewService(db).TenantByRef(ctx, *tenantRef)
		if err != nil {
			return err
		}
		q.TenantID = t.ID
	}
	letters, err := event.DeadLetters(ctx, db, q)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTENANT\tCONSUMER\tSEQ\tCHANGE\tEVENT\tSTATE\tATTEMPTS\tDEAD SINCE\tERROR")
	for _, d := range letters {
		change := fmt.Sprintf("%+d", d.Sign)
		if d.Follows != 0 {
			change += fmt.Sprintf(" (after %d)", d.Follows)
		}
		ev := fmt.Sprintf("%s/%s rev %d %s", d.Event.Source, d.Event.ExternalID, d.Event.Revision, d.Event.Type)
		msg := strings.ReplaceAll(d.Error, "\n", " ")
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.TenantID, d.Consumer, d.Seq, change, ev,
			d.State, d.Attempts, d.Dead.UTC().Format(time.RFC3339), msg)
	}
	return w.Flush()
}
