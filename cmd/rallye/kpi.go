package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

func runKPI(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] != "install-model" {
		return fmt.Errorf("usage: rallye kpi install-model --tenant SLUG [--owner EMAIL]")
	}
	fs := flag.NewFlagSet("kpi install-model", flag.ContinueOnError)
	tenantRef := fs.String("tenant", "", "company slug or id (required)")
	ownerRef := fs.String("owner", "", "e-mail or id of the person owning the KPIs (default: the first admin)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *tenantRef == "" {
		return fmt.Errorf("--tenant is required")
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	svc := org.NewService(db)
	tenant, err := svc.TenantByRef(ctx, *tenantRef)
	if err != nil {
		return err
	}
	owner := uuid.Nil
	if *ownerRef != "" {
		u, err := svc.UserByRef(ctx, tenant.ID, *ownerRef)
		if err != nil {
			return err
		}
		owner = u.ID
	}
	// An insert-only job client: the backfill jobs run in the servers.
	jobs, err := river.NewClient[pgx.Tx](riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		return err
	}
	res, err := kpi.NewService(db, jobs, env.log).InstallModel(ctx,
		rallye.Principal{TenantID: tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}, owner)
	if err != nil {
		return err
	}
	fmt.Printf("company %s: %d KPIs installed", tenant.Slug, len(res.Created))
	if len(res.Kept) > 0 {
		fmt.Printf(", %d already there", len(res.Kept))
	}
	fmt.Println()
	if len(res.Created) > 0 {
		fmt.Println("  " + strings.Join(res.Created, "\n  "))
	}
	return nil
}
