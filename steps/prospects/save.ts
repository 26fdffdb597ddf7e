import { Type } from '@sinclair/typebox';
import { type DatabaseStatement, defineStep, SkipItemError } from '../../engine/sdk.ts';
import { type ProspectRow, ProspectRowSchema } from './sources.ts';

/**
 * `prospects.save` upserts one row of prospects.read per foreach item, skipping a bad row
 * with its reason, which `flows show` counts ("Skipped items by reason").
 */

function saveStatement(row: ProspectRow): DatabaseStatement {
  // A known prospect keeps what it has; the import fills what is missing.
  return {
    sql: `INSERT INTO prospects (domain, company_name, contact_name, email, linkedin_url, sales_navigator_url, source)
          VALUES ($1, $2, $3, $4, $5, $6, $7)
          ON CONFLICT (domain) DO UPDATE SET
            company_name = COALESCE(prospects.company_name, EXCLUDED.company_name),
            contact_name = COALESCE(prospects.contact_name, EXCLUDED.contact_name),
            email = COALESCE(prospects.email, EXCLUDED.email),
            linkedin_url = COALESCE(prospects.linkedin_url, EXCLUDED.linkedin_url),
            sales_navigator_url = COALESCE(prospects.sales_navigator_url, EXCLUDED.sales_navigator_url),
            updated_at = now()
          RETURNING id, (xmax = 0) AS created`,
    params: [row.domain, row.company_name, row.contact_name, row.email, row.linkedin_url, row.sales_navigator_url ?? null, row.source],
    output: (rows) => ({ id: String(rows[0]?.id ?? ''), created: rows[0]?.created === true }),
  };
}

export const prospectsSave = defineStep({
  type: 'prospects.save',
  description: 'Upserts one prospect row from prospects.read (missing fields filled, existing ones kept); a row with a problem is skipped with that reason.',
  input: Type.Object({ row: ProspectRowSchema }, { additionalProperties: false }),
  output: Type.Object({ id: Type.String(), created: Type.Boolean({ description: 'A new prospect (not one already known).' }) }, { additionalProperties: false }),
  effect: {
    kind: (input) => (input.row.problem ? null : 'db.write'),
    transactional: true,
    statement: (input) => saveStatement(input.row),
    plan: (_ctx, input) => ({ summary: `prospect ${input.row.domain}`, output: { id: '(dry run)', created: true } }),
  },
  async run(ctx, input) {
    if (input.row.problem) throw new SkipItemError(input.row.problem);
    const statement = saveStatement(input.row);
    return statement.output(await ctx.db.query(statement.sql, statement.params)) as { id: string; created: boolean };
  },
});
