import { Type } from '@sinclair/typebox';
import { configSection, type DatabaseStatement, defineStep, NonRetriableError, SkipItemError } from '../../engine/sdk.ts';
import { projectResource } from '../resources.ts';
import { mergeDuplicates, type ProspectRow, readRecords, type Source, toProspect } from './sources.ts';

/**
 * `prospects.read` reads the named sources into prospect rows (normalised, checked, merged);
 * `prospects.save` upserts one row per foreach item, skipping a bad row with its reason,
 * which `flows show` counts ("Skipped items by reason").
 */

const Row = Type.Object(
  {
    key: Type.String(),
    source: Type.String(),
    domain: Type.Union([Type.String(), Type.Null()]),
    company_name: Type.Union([Type.String(), Type.Null()]),
    contact_name: Type.Union([Type.String(), Type.Null()]),
    email: Type.Union([Type.String(), Type.Null()]),
    linkedin_url: Type.Union([Type.String(), Type.Null()]),
    problem: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

export const prospectsRead = defineStep({
  type: 'prospects.read',
  description: 'Reads prospect sources named in the config (CSV, Phantombuster result, JSON over HTTP): domains normalised, emails checked, duplicates merged.',
  input: Type.Object(
    { sources: Type.Array(Type.String(), { minItems: 1, description: 'Names under prospect_sources in the config, read in this order.' }) },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      rows: Type.Array(Row, { description: 'One per prospect (merged), plus one per bad record with its problem.' }),
      counts: Type.Object({ records: Type.Integer(), prospects: Type.Integer(), invalid: Type.Integer(), merged: Type.Integer() }),
      invalid_by_reason: Type.Record(Type.String(), Type.Integer()),
    },
    { additionalProperties: false },
  ),
  async run(ctx, input) {
    const sources = configSection<Record<string, Source>>(ctx.config, 'prospect_sources') ?? {};
    const all: ProspectRow[] = [];
    for (const name of input.sources) {
      const source = sources[name];
      if (!source) {
        const names = Object.keys(sources);
        throw new NonRetriableError(`unknown prospect source "${name}" (${names.length ? `prospect_sources in the config: ${names.join(', ')}` : 'declare it under prospect_sources in the config'})`);
      }
      const { projectDir } = await ctx.use(projectResource);
      const records = await readRecords(name, source, { projectDir, signal: ctx.signal });
      records.forEach((record, i) => all.push(toProspect(record, i, name, source)));
      ctx.log.info({ source: name, records: records.length }, 'prospect source read');
    }
    const { rows, merged } = mergeDuplicates(all);
    const invalidByReason: Record<string, number> = {};
    for (const r of rows) if (r.problem) invalidByReason[r.problem] = (invalidByReason[r.problem] ?? 0) + 1;
    const invalid = rows.filter((r) => r.problem).length;
    const reasons = Object.entries(invalidByReason).map(([reason, n]) => `${reason} ${n}`).join(', ');
    ctx.note(`${all.length} records from ${input.sources.join(', ')}: ${rows.length - invalid} prospects, ${merged} duplicates merged, ${invalid} invalid${reasons ? ` (${reasons})` : ''}`);
    return { rows, counts: { records: all.length, prospects: rows.length - invalid, invalid, merged }, invalid_by_reason: invalidByReason };
  },
});

function saveStatement(row: ProspectRow): DatabaseStatement {
  // A known prospect keeps what it has; the import fills what is missing.
  return {
    sql: `INSERT INTO prospects (domain, company_name, contact_name, email, linkedin_url, source)
          VALUES ($1, $2, $3, $4, $5, $6)
          ON CONFLICT (domain) DO UPDATE SET
            company_name = COALESCE(prospects.company_name, EXCLUDED.company_name),
            contact_name = COALESCE(prospects.contact_name, EXCLUDED.contact_name),
            email = COALESCE(prospects.email, EXCLUDED.email),
            linkedin_url = COALESCE(prospects.linkedin_url, EXCLUDED.linkedin_url),
            updated_at = now()
          RETURNING id, (xmax = 0) AS created`,
    params: [row.domain, row.company_name, row.contact_name, row.email, row.linkedin_url, row.source],
    output: (rows) => ({ id: String(rows[0]?.id ?? ''), created: rows[0]?.created === true }),
  };
}

export const prospectsSave = defineStep({
  type: 'prospects.save',
  description: 'Upserts one prospect row from prospects.read (missing fields filled, existing ones kept); a row with a problem is skipped with that reason.',
  input: Type.Object({ row: Row }, { additionalProperties: false }),
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
