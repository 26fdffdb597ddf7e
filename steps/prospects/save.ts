import { Type } from '@sinclair/typebox';
import { defineStep, type Queryable, SkipItemError } from '../../engine/sdk.ts';
import { type ProspectRow, ProspectRowSchema, problemOf } from './sources.ts';

/**
 * `prospects.save` upserts one row of prospects.read per foreach item, skipping a bad row
 * with its reason, which `flows show` counts ("Skipped items by reason"). A row is the
 * prospect with its domain, else the one with its LinkedIn profile (so a prospect known by
 * its profile alone gets its domain from the first row that brings it), else a new one.
 */

type Saved = { id: string; created: boolean };

// A known prospect keeps what it has; the row fills what is missing. Its profile is filled
// only when no other prospect has it (one prospect per profile).
const FILL = `UPDATE prospects p SET
    domain = COALESCE(p.domain, $1),
    company_name = COALESCE(p.company_name, $2),
    contact_name = COALESCE(p.contact_name, $3),
    email = COALESCE(p.email, $4),
    linkedin_url = COALESCE(p.linkedin_url, CASE WHEN NOT EXISTS (SELECT 1 FROM prospects o WHERE o.linkedin_url = $5) THEN $5 END),
    sales_navigator_url = COALESCE(p.sales_navigator_url, $6),
    timezone = COALESCE(p.timezone, $7),
    updated_at = now()
  WHERE p.id = (SELECT t.id FROM prospects t WHERE t.domain = $1 OR t.linkedin_url = $5 ORDER BY t.domain = $1 IS TRUE DESC LIMIT 1)
  RETURNING p.id, false AS created`;

const INSERT = `INSERT INTO prospects (domain, company_name, contact_name, email, linkedin_url, sales_navigator_url, timezone, source)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
  RETURNING id, true AS created`;

/** Two statements in the effect's transaction: a data-modifying WITH cannot be nested in the one that records the effect. */
async function save(db: Queryable, row: ProspectRow): Promise<Saved> {
  const params = [row.domain, row.company_name, row.contact_name, row.email, row.linkedin_url, row.sales_navigator_url ?? null, row.timezone ?? null];
  const [known] = await db.query<{ id: string; created: boolean }>(FILL, params);
  const [saved] = known ? [known] : await db.query<{ id: string; created: boolean }>(INSERT, [...params, row.source]);
  return { id: String(saved?.id ?? ''), created: saved?.created === true };
}

export const prospectsSave = defineStep({
  type: 'prospects.save',
  description: 'Upserts one prospect row from prospects.read by its domain, else its LinkedIn profile (missing fields filled, existing ones kept); a row with a problem is skipped with that reason.',
  input: Type.Object({ row: ProspectRowSchema }, { additionalProperties: false }),
  output: Type.Object({ id: Type.String(), created: Type.Boolean({ description: 'A new prospect (not one already known).' }) }, { additionalProperties: false }),
  effect: {
    kind: (input) => (problemOf(input.row) ? null : 'db.write'),
    transactional: true,
    plan: (_ctx, input) => ({ summary: `prospect ${input.row.domain ?? input.row.linkedin_url}`, output: { id: '(dry run)', created: true } }),
  },
  async run(ctx, input) {
    const problem = problemOf(input.row);
    if (problem) throw new SkipItemError(problem);
    return save(ctx.db, input.row);
  },
});
