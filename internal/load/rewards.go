package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// RewardsConfig shapes a `rallye load rewards` run.
type RewardsConfig struct {
	// Users reps, each with Entries ledger entries of history.
	Users, Entries int
	// Reads wallet reads by Clients concurrent readers, in each mode.
	Reads, Clients int
	// Redemptions requests at once of one item holding Stock.
	Redemptions, Stock int
	Keep               bool
	App                config.Config
	Out                io.Writer
	Log                *slog.Logger
}

// RunRewards measures the wallet read (balance, level and the last 20
// entries) through GetWallet on loopback, through the service in process,
// and as the raw PostgreSQL ceiling of the same statements; then
// Redemptions concurrent redemptions of one item, through RedeemReward and
// as the raw ceiling of the same transaction. An in-process server on a
// fresh database; figures are printed, never asserted.
func RunRewards(ctx context.Context, cfg RewardsConfig) error {
	r := &run{cfg: Config{App: cfg.App, Out: cfg.Out, Log: cfg.Log, Keep: cfg.Keep},
		printf: func(format string, args ...any) { fmt.Fprintf(cfg.Out, format, args...) }}
	defer func() {
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	}()
	if err := r.start(ctx); err != nil {
		return err
	}
	l := &rewardsLoad{run: r, cfg: cfg}
	if err := l.seed(ctx); err != nil {
		return err
	}
	api, err := l.readAPI(ctx)
	if err != nil {
		return err
	}
	svc, err := l.readService(ctx)
	if err != nil {
		return err
	}
	raw, err := l.readRaw(ctx)
	if err != nil {
		return err
	}
	red, err := l.redeemAPI(ctx)
	if err != nil {
		return err
	}
	rawRed, err := l.redeemRaw(ctx)
	if err != nil {
		return err
	}
	equal, err := l.balancesEqualLedger(ctx)
	if err != nil {
		return err
	}
	l.report(api, svc, raw, red, rawRed, equal)
	return nil
}

type rewardsLoad struct {
	*run
	cfg    RewardsConfig
	users  []org.User
	tokens []string
}

// timed is a measured series.
type timed struct {
	latencies []time.Duration
	elapsed   time.Duration
	ok, out   int
	other     []error
}

func (t *timed) sort() { slices.Sort(t.latencies) }

func (t timed) rate() float64 { return float64(len(t.latencies)) / t.elapsed.Seconds() }

func (l *rewardsLoad) seed(ctx context.Context) error {
	svc := org.NewService(l.db)
	slug := "rewards-" + randomHex(3)
	tenant, admin, err := svc.CreateTenant(ctx, org.NewTenant{Name: "Load " + slug, Slug: slug, TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Load admin", Email: "admin@" + slug + ".test"}})
	if err != nil {
		return err
	}
	l.tenant, l.admin = tenant, admin
	op := rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	team, err := svc.CreateTeam(ctx, op, org.CreateTeamRequest{Name: "Ventes"})
	if err != nil {
		return err
	}
	for start := 0; start < l.cfg.Users; start += 1000 {
		var rows []org.ImportRow
		for i := start; i < min(start+1000, l.cfg.Users); i++ {
			ext := fmt.Sprintf("rep-%05d", i)
			rows = append(rows, org.ImportRow{User: org.UserInput{DisplayName: "Rep " + ext, Email: ext + "@" + slug + ".test",
				Locale: org.LocaleFR, ExternalID: ext, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{team.ID}}})
		}
		if res, err := svc.ImportUsers(ctx, op, rows); err != nil || len(res.Rejected) > 0 {
			return fmt.Errorf("import reps: %v %+v", err, res.Rejected)
		}
	}
	all, err := svc.ListUsers(ctx, op, org.ListUsersRequest{Size: 500})
	if err != nil {
		return err
	}
	for len(all) > 0 {
		for _, u := range all {
			if u.ID != admin.ID {
				l.users = append(l.users, u)
			}
		}
		all, err = svc.ListUsers(ctx, op, org.ListUsersRequest{Size: 500, Cursor: page.Cursor{After: all[len(all)-1].ID}})
		if err != nil {
			return err
		}
	}
	for _, u := range l.users {
		tok, err := auth.MintToken([]byte(l.run.cfg.App.JWTSecret), l.run.cfg.App.JWTIssuer, l.run.cfg.App.JWTAudience, auth.TokenRequest{
			TenantID: tenant.ID, UserID: u.ID, Roles: u.Roles, TTL: 24 * time.Hour, Now: time.Now()})
		if err != nil {
			return err
		}
		l.tokens = append(l.tokens, tok)
	}
	if l.token, err = auth.MintToken([]byte(l.run.cfg.App.JWTSecret), l.run.cfg.App.JWTIssuer, l.run.cfg.App.JWTAudience, auth.TokenRequest{
		TenantID: tenant.ID, UserID: admin.ID, Roles: admin.Roles, TTL: 24 * time.Hour, Now: time.Now()}); err != nil {
		return err
	}
	// History: Entries entries per person through the ledger's writer, a
	// thousand per call, as manual grants and kudos with their causes.
	start := time.Now()
	var entries []leaderboard.Entry
	flush := func() error {
		err := l.db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			_, err := l.app.Boards.Scores.Record(ctx, tx, tenant.ID, entries)
			return err
		})
		entries = entries[:0]
		return err
	}
	causes := []json.RawMessage{
		json.RawMessage(`{"by": "Load admin", "reason": "Objectif de la semaine atteint"}`),
		json.RawMessage(`{"by": "Rep rep-00001", "reason": "Merci pour la démo !"}`),
	}
	total := 0
	for i, u := range l.users {
		for n := range l.cfg.Entries {
			kind := leaderboard.EntryManual
			if n%3 == 1 {
				kind = leaderboard.EntryKudos
			}
			entries = append(entries, leaderboard.Entry{Key: fmt.Sprintf("load:%d:%d", i, n), UserID: u.ID, Points: int64(5 + n%40),
				At: start.Add(-time.Duration(l.cfg.Entries-n) * time.Hour), Reason: "load", Kind: kind, Cause: causes[n%2]})
			total++
			if len(entries) == leaderboard.MaxEntries {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if len(entries) > 0 {
		if err := flush(); err != nil {
			return err
		}
	}
	// The rewards consumer announces the levels the history reached: let
	// it finish before measuring.
	for deadline := time.Now().Add(10 * time.Minute); ; {
		var pending bool
		err := l.db.ReadTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			var err error
			pending, err = outbox.Pending(ctx, tx, tenant.ID, reward.OutboxConsumer)
			return err
		})
		if err != nil {
			return err
		}
		if !pending || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := l.db.Pool.Exec(ctx, `ANALYZE`); err != nil {
		return err
	}
	l.printf("company %s: %d reps, %d ledger entries written in %.1f s\n", slug, len(l.users), total, time.Since(start).Seconds())
	return nil
}

// concurrently runs n calls of fn over clients goroutines and times each.
func concurrently(ctx context.Context, n, clients int, fn func(ctx context.Context, i int) error) timed {
	var t timed
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				s := time.Now()
				err := fn(ctx, i)
				d := time.Since(s)
				mu.Lock()
				t.latencies = append(t.latencies, d)
				switch {
				case err == nil:
					t.ok++
				case connect.CodeOf(err) == connect.CodeResourceExhausted || rallye.ErrorCode(err) == rallye.CodeResourceExhausted:
					t.out++
				default:
					t.other = append(t.other, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.elapsed = time.Since(start)
	t.sort()
	return t
}

func (l *rewardsLoad) rewardClient(token string, hc *http.Client) rallyev1connect.RewardServiceClient {
	return rallyev1connect.NewRewardServiceClient(hc, l.baseURL, bearer(token))
}

func (l *rewardsLoad) readAPI(ctx context.Context) (timed, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.cfg.Clients}}
	clients := make([]rallyev1connect.RewardServiceClient, len(l.tokens))
	for i, tok := range l.tokens {
		clients[i] = l.rewardClient(tok, hc)
	}
	read := func(ctx context.Context, i int) error {
		res, err := clients[i%len(clients)].GetWallet(ctx, &rallyev1.GetWalletRequest{Entries: 20})
		if err == nil && len(res.Wallet.Entries) != min(20, l.cfg.Entries) {
			return fmt.Errorf("%d entries", len(res.Wallet.Entries))
		}
		return err
	}
	concurrently(ctx, min(l.cfg.Reads/10, 500), l.cfg.Clients, read) // warm-up
	t := concurrently(ctx, l.cfg.Reads, l.cfg.Clients, read)
	return t, errors.Join(t.other...)
}

func (l *rewardsLoad) principal(i int) rallye.Principal {
	u := l.users[i%len(l.users)]
	return rallye.Principal{TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles}
}

func (l *rewardsLoad) readService(ctx context.Context) (timed, error) {
	t := concurrently(ctx, l.cfg.Reads, l.cfg.Clients, func(ctx context.Context, i int) error {
		_, err := l.app.Rewards.Wallet(ctx, l.principal(i), uuid.Nil, 20)
		return err
	})
	return t, errors.Join(t.other...)
}

// readRaw runs the statements the wallet read runs, in one transaction on a
// pooled connection, without the service's code around them: the ceiling.
func (l *rewardsLoad) readRaw(ctx context.Context) (timed, error) {
	t := concurrently(ctx, l.cfg.Reads, l.cfg.Clients, func(ctx context.Context, i int) error {
		p := l.principal(i)
		tx, err := l.db.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		b := &pgx.Batch{}
		b.Queue(`SELECT set_config('rallye.tenant_id', $1, true), set_config('rallye.all_tenants', '', true)`, p.TenantID.String())
		b.Queue(`SELECT u.id, u.display_name, u.locale, coalesce(nullif(u.time_zone, ''), t.time_zone), coalesce(u.external_id, ''),
				u.active, u.roles, coalesce((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
				WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id), '{}')
			FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.tenant_id = $1 AND u.id = ANY($2)`, p.TenantID, []uuid.UUID{p.UserID})
		b.Queue(`SELECT spendable, lifetime, pending FROM wallet_balances WHERE tenant_id = $1 AND user_id = $2`, p.TenantID, p.UserID)
		b.Queue(`SELECT levels, points_per_unit, max_manual_grant, kudos_allowance, weekend, streak_risk_hour
			FROM reward_settings WHERE tenant_id = $1`, p.TenantID)
		b.Queue(`SELECT seq, key, user_id, coalesce(challenge_id, '00000000-0000-0000-0000-000000000000'), points, kind, cause, earned_at, recorded_at
			FROM points_ledger WHERE tenant_id = $1 AND user_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT 20`, p.TenantID, p.UserID, int64(1<<63-1))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	return t, errors.Join(t.other...)
}

// redeemAPI sends Redemptions RedeemReward calls at once for one item with
// Stock left, from the reps in turn.
func (l *rewardsLoad) redeemAPI(ctx context.Context) (timed, error) {
	stock := l.cfg.Stock
	admin := rallye.Principal{TenantID: l.tenant.ID, UserID: l.admin.ID, Roles: l.admin.Roles}
	it, err := l.app.Rewards.CreateItem(ctx, admin, reward.ItemInput{Name: reward.Text{FR: "Casque audio", EN: "Headphones"}, Cost: 20,
		Stock: &stock}, "")
	if err != nil {
		return timed{}, err
	}
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256}}
	clients := make([]rallyev1connect.RewardServiceClient, len(l.tokens))
	for i, tok := range l.tokens {
		clients[i] = l.rewardClient(tok, hc)
	}
	t := concurrently(ctx, l.cfg.Redemptions, l.cfg.Redemptions, func(ctx context.Context, i int) error {
		_, err := clients[i%len(clients)].RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: it.ID.String(),
			RequestId: fmt.Sprintf("load-%d", i)})
		return err
	})
	return t, errors.Join(t.other...)
}

// redeemRaw runs the redemption's transaction directly: lock the item, take
// one from stock, insert the redemption and the ledger entry (its trigger
// moving the balance), for another item.
func (l *rewardsLoad) redeemRaw(ctx context.Context) (timed, error) {
	item := uuid.Must(uuid.NewV7())
	err := l.db.InTenant(ctx, l.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO reward_items (tenant_id, id, name_fr, name_en, cost, stock) VALUES ($1, $2, 'Raw', 'Raw', 20, $3)`,
			l.tenant.ID, item, l.cfg.Stock)
		return err
	})
	if err != nil {
		return timed{}, err
	}
	errOut := &rallye.Error{Code: rallye.CodeResourceExhausted}
	t := concurrently(ctx, l.cfg.Redemptions, min(l.cfg.Redemptions, 64), func(ctx context.Context, i int) error {
		p := l.principal(i)
		return l.db.InTenant(ctx, l.tenant.ID, func(tx pgx.Tx) error {
			var stock int
			if err := tx.QueryRow(ctx, `SELECT stock FROM reward_items WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, p.TenantID, item).Scan(&stock); err != nil {
				return err
			}
			if stock == 0 {
				return errOut
			}
			id := uuid.Must(uuid.NewV7())
			b := &pgx.Batch{}
			b.Queue(`UPDATE reward_items SET stock = stock - 1 WHERE tenant_id = $1 AND id = $2`, p.TenantID, item)
			b.Queue(`INSERT INTO redemptions (tenant_id, id, item_id, user_id, state, cost, money_value, currency, item_name_fr,
				item_name_en, requested_at, updated_at) VALUES ($1, $2, $3, $4, 'approved', 20, 200, 'EUR', 'Raw', 'Raw', now(), now())`,
				p.TenantID, id, item, p.UserID)
			b.Queue(`INSERT INTO points_ledger (tenant_id, key, user_id, points, earned_at, reason, kind) VALUES ($1, $2, $3, -20, now(), 'raw', 'redemption')`,
				p.TenantID, "raw:"+id.String(), p.UserID)
			return tx.SendBatch(ctx, b).Close()
		})
	})
	return t, errors.Join(t.other...)
}

// balancesEqualLedger compares every balance with the ledger's sums.
func (l *rewardsLoad) balancesEqualLedger(ctx context.Context) (bool, error) {
	var bad int
	err := l.db.ReadTenant(ctx, l.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM wallet_balances b FULL JOIN (
				SELECT l.user_id,
					sum(points) FILTER (WHERE l.challenge_id IS NULL OR s.challenge_id IS NOT NULL) AS spendable,
					sum(points) FILTER (WHERE kind NOT IN ('redemption', 'refund')) AS lifetime
				FROM points_ledger l LEFT JOIN wallet_settlements s ON s.tenant_id = l.tenant_id AND s.challenge_id = l.challenge_id
				GROUP BY l.user_id) x ON x.user_id = b.user_id
			WHERE b.spendable IS DISTINCT FROM coalesce(x.spendable, 0) OR b.lifetime IS DISTINCT FROM coalesce(x.lifetime, 0)
			   OR b.spendable < 0`).Scan(&bad)
	})
	return bad == 0, err
}

func (l *rewardsLoad) report(api, svc, raw, red, rawRed timed, equal bool) {
	l.printf("\n== rallye load rewards, %s: %d reps x %d entries, %d wallet reads by %d clients ==\n",
		time.Now().UTC().Format(time.RFC3339), len(l.users), l.cfg.Entries, l.cfg.Reads, l.cfg.Clients)
	line := func(name string, t timed) {
		l.printf("%-58s p50 %s, p99 %s, %6.0f reads/s\n", name, ms(pct(t.latencies, 0.5)), ms(pct(t.latencies, 0.99)), t.rate())
	}
	line("wallet read, GetWallet (Connect, loopback)", api)
	line("wallet read, reward.Service.Wallet in process", svc)
	line("raw ceiling, the same statements in one transaction", raw)
	l.printf("%d redemptions at once of one item with %d in stock, RedeemReward (Connect):\n", l.cfg.Redemptions, l.cfg.Stock)
	l.printf("  %d redeemed, %d out of stock, %d other errors; %.2f s, %.0f requests/s, p50 %s, p99 %s\n",
		red.ok, red.out, len(red.other), red.elapsed.Seconds(), red.rate(), ms(pct(red.latencies, 0.5)), ms(pct(red.latencies, 0.99)))
	l.printf("raw ceiling, the same transaction via pgx (64 connections):\n")
	l.printf("  %d redeemed, %d out of stock, %d other errors; %.2f s, %.0f requests/s, p50 %s, p99 %s\n",
		rawRed.ok, rawRed.out, len(rawRed.other), rawRed.elapsed.Seconds(), rawRed.rate(), ms(pct(rawRed.latencies, 0.5)),
		ms(pct(rawRed.latencies, 0.99)))
	l.printf("every balance equals its ledger and none is below zero: %v\n", equal)
}
