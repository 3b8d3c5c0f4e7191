// Package migrations embeds Rallye's SQL schema migrations (goose format) so
// that the binary applies them itself (`rallye migrate`, and `rallye serve` at
// start).
//
// Conventions: every table holding company data has a tenant_id column, a
// primary key that starts with it, and the tenant_isolation row-level
// security policy (forced, so it binds the table owner too). Code reaches those
// tables only through postgres.DB.InTenant or the explicit AcrossTenants.
package migrations

import "embed"

// FS holds the *.sql migrations, applied in file-name order.
//
//go:embed *.sql
var FS embed.FS
